package pipeline_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/transform"
)

// TestHostileBodyClosedMidRow: a body without Content-Length that the
// server closes mid-row ends like a whole one, after a last row without its
// line ending that does not parse. It is a broken stream: the attempt is
// retried (a counted call), nothing of it is loaded or kept as a reject,
// and when every attempt is cut the run fails saying so, with nothing
// loaded and no window taken for complete.
func TestHostileBodyClosedMidRow(t *testing.T) {
	t.Run("cut once, retried", func(t *testing.T) {
		srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 33, CutStyle: fakeapi.CutClose})
		srv.InjectFault(fakeapi.FaultCut)
		env := newHostileEnv(t)
		res, err := env.sync(env.client(url), 5000)
		if err != nil {
			t.Fatal(err)
		}
		if res.Calls != 2 || srv.Calls() != 2 || res.Rejects != 0 || !res.Complete {
			t.Errorf("%d calls (server %d), %d rejects, complete %v; want 2 calls (one retry), no reject, complete", res.Calls, srv.Calls(), res.Rejects, res.Complete)
		}
		if !strings.Contains(env.logs.String(), "export call failed, retrying") || !strings.Contains(env.logs.String(), "cut mid-row") {
			t.Errorf("the log does not say the cut attempt was retried:\n%s", env.logs.String())
		}
		env.checkBoth(t, srv.Dataset(), func(fakeapi.Contact) bool { return true })
		var n int
		if err := env.db.DB().QueryRow(`SELECT count(*) FROM _leadlex_rejects`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rejects stored (%v), want none", n, err)
		}
		env.checkNoKey(t)
	})
	t.Run("every attempt cut", func(t *testing.T) {
		srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 33, CutRate: 1, CutStyle: fakeapi.CutClose})
		env := newHostileEnv(t)
		res, err := env.sync(env.client(url), 5000)
		var se *extract.StreamError
		var te *transform.TruncatedError
		if !errors.As(err, &se) || !errors.As(err, &te) || !extract.Transient(err) {
			t.Fatalf("got %v, want a transient *extract.StreamError holding a *transform.TruncatedError", err)
		}
		for _, want := range []string{"gave up after 2 attempts", "response body broken off", "the body ends inside the record of line", "cut mid-row"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error %q does not say %q", err, want)
			}
		}
		if res.Calls != 2 || srv.Calls() != 2 || res.Windows != 0 || res.Complete {
			t.Errorf("%d calls (server %d), %d windows, complete %v; want 2 calls, no window", res.Calls, srv.Calls(), res.Windows, res.Complete)
		}
		env.checkNothingLoaded(t)
		env.checkNoKey(t, err.Error())
	})
}
