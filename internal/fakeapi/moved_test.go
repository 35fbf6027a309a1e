package fakeapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestMovedContactsAreExportedAtTheirNewTime moves contacts' created_at
// forward and back: in every order, an export of their new time returns
// them there, with the rows still in the order's time order, and no export
// returns them at their old time.
func TestMovedContactsAreExportedAtTheirNewTime(t *testing.T) {
	for _, order := range []Order{OrderAsc, OrderDesc, OrderRandom} {
		t.Run(string(order), func(t *testing.T) {
			srv, ts := newTestServer(t, Config{Contacts: 300, Seed: 5, Order: order})
			d := srv.Dataset()
			early, late := d.Contact(20), d.Contact(250)
			fwd, back := d.CreatedAt(250), d.CreatedAt(20)
			srv.Move(fwd, 20)
			srv.Move(back, 250)
			_, recs := export(t, ts, "limit=50000")
			if len(recs) != 301 {
				t.Fatalf("%d rows, want 300", len(recs)-1)
			}
			at := map[string]string{}
			var prev time.Time
			for k, rec := range recs[1:] {
				at[rec[0]] = rec[8]
				ts, err := time.Parse(time.RFC3339, rec[8])
				if err != nil {
					t.Fatal(err)
				}
				if k > 0 && ((order == OrderAsc && ts.Before(prev)) || (order == OrderDesc && ts.After(prev))) {
					t.Errorf("row %d at %s comes after one at %s in %s order", k, ts, prev, order)
				}
				prev = ts
			}
			if at[early.ID] != fwd.Format(time.RFC3339) || at[late.ID] != back.Format(time.RFC3339) {
				t.Errorf("moved contacts at %s and %s, want %s and %s", at[early.ID], at[late.ID], fwd, back)
			}
			// An export of the old second of one is the new second of the
			// other: each is there once, at its new time.
			_, recs = export(t, ts, "created_after="+url.QueryEscape(back.Format(time.RFC3339))+"&created_before="+url.QueryEscape(back.Add(time.Second).Format(time.RFC3339)))
			var ids []string
			for _, rec := range recs[1:] {
				ids = append(ids, rec[0])
			}
			if got := strings.Join(ids, " "); strings.Contains(got, early.ID) || !strings.Contains(got, late.ID) {
				t.Errorf("the second %s exports %s", back, got)
			}
			if got := srv.Dataset().Contact(20).CreatedAt; !got.Equal(fwd) {
				t.Errorf("Contact(20).CreatedAt = %s, want %s", got, fwd)
			}
		})
	}
}

func TestMutateEndpointMoves(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 200, Seed: 4, Control: true})
	resp, body, err := doRequest(t, ts, http.MethodPost, MutatePath, "move=3&move_to=2030-01-01T00:00:00Z", "Bearer "+DemoKey)
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(body), `"moved":3`) {
		t.Fatalf("POST: %d %s %v", resp.StatusCode, body, err)
	}
	_, recs := export(t, ts, "created_after=2029-12-31T00:00:00Z&limit=50000")
	if len(recs) < 2 || len(recs) > 4 || srv.Dataset().Len() != 200 {
		t.Errorf("%d contacts created in 2030, want 1 to 3 (picks may repeat)", len(recs)-1)
	}
	if resp, body, _ := doRequest(t, ts, http.MethodPost, MutatePath, "move=1&move_to=soon", "Bearer "+DemoKey); resp.StatusCode != 400 {
		t.Errorf("a bad move_to: %d %s", resp.StatusCode, body)
	}
}
