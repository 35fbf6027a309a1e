package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestRepeatedFieldsAreOneField syncs with --fields naming a field twice:
// it is asked for once (the API refuses a repeated field, which used to
// cost a call and exit 1), and the stream is the one of the field named
// once, so neither spelling starts a new stream.
func TestRepeatedFieldsAreOneField(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 500, Seed: 8})
	db := filepath.Join(t.TempDir(), "w.duckdb")
	env := []string{"LEADLEX_API_KEY=" + cliKey}
	r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q", "--fields", "email,email")
	if r.code != 0 || srv.Calls() != 1 {
		t.Fatalf("--fields email,email: exit %d after %d calls, want 0 after 1: %s", r.code, srv.Calls(), r.stderr)
	}
	if n := count(t, db, "SELECT count(*) FROM contacts WHERE email IS NOT NULL"); n == 0 {
		t.Error("no email loaded")
	}
	if n := count(t, db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'contacts' AND column_name LIKE 'email%'"); n != 1 {
		t.Errorf("%d email columns, want 1", n)
	}
	for _, fields := range []string{"email", " email, email ,email,id"} {
		calls := srv.Calls()
		r := cli(t, env, "sync", "--base-url", url, "--duckdb", db, "-q", "--fields", fields)
		if r.code != 0 || srv.Calls()-calls != 1 {
			t.Errorf("--fields %q: exit %d after %d calls, want the same stream: 0 after 1: %s", fields, r.code, srv.Calls()-calls, r.stderr)
		}
	}
	if n := count(t, db, "SELECT count(*) FROM _leadlex_streams"); n != 1 {
		t.Errorf("%d streams, want 1", n)
	}
}

// TestUnwritableRawDirIsRefusedBeforeAnyCall syncs, as a user without the
// rights, with a --raw-dir that exists but cannot be written, and with one
// whose folder of the stream cannot: each is refused with exit 2 and a
// message saying what could not be written and what to do, before any
// call (it used to be found after the first, exit 1), and the new
// destination is not left behind. As root (which writes anywhere) the sync
// runs as nobody.
func TestUnwritableRawDirIsRefusedBeforeAnyCall(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 50})
	bin, cred, dir := asNobody(t)
	mkdir := func(path string, mode os.FileMode) string {
		t.Helper()
		if err := os.Mkdir(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	shared := mkdir(filepath.Join(dir, "shared"), 0o777)
	state := mkdir(filepath.Join(dir, "state"), 0o777)
	readOnly := mkdir(filepath.Join(dir, "raw-ro"), 0o555)
	rawOK := mkdir(filepath.Join(dir, "raw"), 0o777)
	streamID, _ := pipeline.StreamIdentity(url, extract.Query{Limit: extract.MaxLimit})
	streamRO := mkdir(filepath.Join(rawOK, streamID), 0o555)
	for _, tc := range []struct {
		name, raw, names string
	}{
		{"raw dir read-only", readOnly, readOnly},
		{"stream's folder read-only", rawOK, streamRO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(shared, "new.duckdb")
			cmd := exec.Command(bin, "sync", "--base-url", url, "--duckdb", db, "--raw-dir", tc.raw, "-q")
			cmd.Env = append(cliEnv(t, "LEADLEX_BASE_URL="), "LEADLEX_API_KEY="+cliKey, "XDG_STATE_HOME="+state)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("%v, want exit 2: %s", err, stderr.String())
			}
			for _, w := range []string{"--raw-dir", "cannot write in " + tc.names, "permission denied", "give a folder this user can write to"} {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not say %q", stderr.String(), w)
				}
			}
			if _, err := os.Stat(db); err == nil {
				t.Errorf("the new destination %s was left behind", db)
			}
			if n := srv.Requests(); n != 0 {
				t.Errorf("%d requests, want none", n)
			}
		})
	}
}

// asNobody returns the binary to run as a user without root's rights, the
// credential to run it with (nil when not root) and a folder such a user
// can reach, as TestUnwritableDestinationsAreExplained does.
func asNobody(t *testing.T) (bin string, cred *syscall.Credential, dir string) {
	t.Helper()
	dir, bin = t.TempDir(), os.Args[0]
	if os.Geteuid() != 0 {
		return bin, nil, dir
	}
	cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin = filepath.Join(dir, "leadlex-etl")
	if err := os.Link(os.Args[0], bin); err != nil {
		copyFile(t, os.Args[0], bin)
	}
	return bin, cred, dir
}
