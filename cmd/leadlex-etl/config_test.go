package main

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// TestConfigFileAndFlagsCombine runs sync, plan and status from a config
// file with two streams: the stream's keys override the file's top level,
// the command line overrides both (a list flag is replaced, not added to),
// paths are relative to the file, the key comes by reference, and every
// mistake is found before the first call.
func TestConfigFileAndFlagsCombine(t *testing.T) {
	srv, url := fake(t, fakeapi.Config{Contacts: 2000, Seed: 4, RateLimit: 10, Hour: time.Hour})
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "key"), []byte(cliKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(conf, "leadlex.toml")
	write := func(path, body string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg, `# two streams into one warehouse; the second also into a lake
base_url = "`+url+`"
api-key-file = "key"
duckdb = "wh.duckdb"
limit = 1000
max-calls = 1
summary-json = "{stream}.json"

[streams.vip]
tag = ["vip"]
max-calls = 5

[streams.everyone]
parquet = "lake"
max_calls = 5
`)
	// No key in the environment: the file names where it is.
	r := cliIn(t, dir, nil, "sync", "--config", "conf/leadlex.toml", "-q")
	if r.code != 0 {
		t.Fatalf("sync --config: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, "stream vip:") || !strings.Contains(r.stdout, "stream everyone:") {
		t.Errorf("the summary does not name the streams:\n%s", r.stdout)
	}
	// Paths are the file's: nothing landed in the working folder.
	for _, p := range []string{"wh.duckdb", "lake", "vip.json"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was written next to the working folder, not the config file", p)
		}
	}
	db := filepath.Join(conf, "wh.duckdb")
	if n := count(t, db, "SELECT count(*) FROM contacts"); n != 2000 {
		t.Errorf("%d contacts in the warehouse, want 2000", n)
	}
	if n := count(t, db, "SELECT count(*) FROM _leadlex_streams"); n != 2 {
		t.Errorf("%d streams in the warehouse, want 2", n)
	}
	// The streams' max-calls (5) beat the top level's (1): both completed.
	for _, name := range []string{"vip", "everyone"} {
		b, err := os.ReadFile(filepath.Join(conf, name+".json"))
		if err != nil {
			t.Fatalf("summary of %s: %v", name, err)
		}
		var rep syncReport
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if rep.State != "complete" || rep.ExitCode != 0 {
			t.Errorf("stream %s: %s (exit %d), want complete", name, rep.State, rep.ExitCode)
		}
		if name == "everyone" && (rep.Calls < 2 || len(rep.Destinations) != 2) {
			t.Errorf("stream everyone: %d calls into %v", rep.Calls, rep.Destinations)
		}
	}
	calls := srv.Calls()

	// A flag overrides the file, and a list flag replaces the list: the
	// plan of vip with --tag partner is of a stream tagged partner alone,
	// a new one next to streams that are not its siblings.
	r = cliIn(t, dir, nil, "plan", "--config", "conf/leadlex.toml", "--stream", "vip", "--tag", "partner", "--json")
	if r.code != 0 {
		t.Fatalf("plan: %d %s", r.code, r.stderr)
	}
	var p pipeline.PlanResult
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, r.stdout)
	}
	var ident pipeline.Identity
	if err := json.Unmarshal([]byte(p.Identity), &ident); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ident.Tags, []string{"partner"}) || !p.NewStream || !p.NeedsConsent {
		t.Errorf("plan with --tag partner: tags %v, new %v, needs consent %v", ident.Tags, p.NewStream, p.NeedsConsent)
	}
	// Without the override each stream's plan is of the stream synced,
	// one JSON object a line.
	r = cliIn(t, dir, nil, "plan", "--config", "conf/leadlex.toml", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("plan of both streams: %d, %d lines\n%s%s", r.code, len(lines), r.stdout, r.stderr)
	}
	for i, l := range lines {
		var p pipeline.PlanResult
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if p.NewStream || p.NeedsConsent {
			t.Errorf("line %d: %s is new (%v) or needs consent (%v)", i, p.Identity, p.NewStream, p.NeedsConsent)
		}
	}

	// status reads each destination the streams name, once.
	r = cliIn(t, dir, nil, "status", "--config", "conf/leadlex.toml", "--json")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 2 {
		t.Fatalf("status: %d, %d lines\n%s%s", r.code, len(lines), r.stdout, r.stderr)
	}
	var dests []string
	for _, l := range lines {
		var rep statusReport
		if err := json.Unmarshal([]byte(l), &rep); err != nil {
			t.Fatal(err)
		}
		dests = append(dests, filepath.Base(rep.Destination)+":"+rep.Kind)
		if len(rep.Budgets) != 1 {
			t.Errorf("%s: the budget of the key the file names is not shown: %+v", rep.Destination, rep.Budgets)
		}
	}
	if !slices.Equal(dests, []string{"wh.duckdb:duckdb", "lake:lake"}) {
		t.Errorf("status showed %v", dests)
	}
	if srv.Calls() != calls {
		t.Fatalf("plan or status made %d calls", srv.Calls()-calls)
	}

	// Mistakes: exit 2, before any call.
	bad := filepath.Join(conf, "bad.toml")
	for _, c := range []struct {
		name, body string
		args       []string
		want       string
	}{
		{"a key in the file", "api_key = \"" + cliKey + "\"\nduckdb = \"x.duckdb\"\n", nil, "api-key-env"},
		{"an unknown key", "duckdb = \"x.duckdb\"\ntga = \"vip\"\n", nil, `unknown key "tga"`},
		{"a bad value", "duckdb = \"x.duckdb\"\nmax-calls = \"many\"\n", nil, "max-calls"},
		{"a list for one value", "duckdb = [\"a\", \"b\"]\n", nil, "not a list"},
		{"broken TOML", "duckdb = \n", nil, "line 1"},
		{"a bad stream after a good one", "base-url = \"" + url + "\"\napi-key-file = \"key\"\n[streams.good]\nduckdb = \"g.duckdb\"\n[streams.bad]\nduckdb = \"b.duckdb\"\nlimit = 0\n", nil, "stream bad: --limit 0"},
		{"an unknown stream", "[streams.a]\nduckdb = \"a.duckdb\"\n", []string{"--stream", "b"}, `no such stream (it has a)`},
		{"one summary for two streams", "summary-json = \"s.json\"\n[streams.a]\nduckdb = \"a.duckdb\"\n[streams.b]\nduckdb = \"b.duckdb\"\n", nil, "{stream}"},
		{"a key where a variable's name belongs", "api-key-env = \"" + cliKey + "\"\nduckdb = \"x.duckdb\"\n", nil, "looks like an API key"},
		{"a key in any value", "duckdb = \"x.duckdb\"\nlist-id = \"" + cliKey + "\"\n", nil, "looks like an API key"},
		{"a nested table in a stream", "[streams.a]\nduckdb = \"a.duckdb\"\n[streams.a.b]\nz = 1\n", nil, `unknown key "b"`},
		{"an odd stream name", "[streams.\"a,b\"]\nduckdb = \"a.duckdb\"\n", nil, "stream name"},
		{"a later stream's destination that does not open", "base-url = \"" + url + "\"\napi-key-file = \"key\"\n[streams.good]\nduckdb = \"g.duckdb\"\n[streams.bad]\nduckdb = \"key\"\n", nil, "stream bad:"},
		{"a later stream that needs --new-stream", "base-url = \"" + url + "\"\napi-key-file = \"key\"\n[streams.good]\nduckdb = \"g.duckdb\"\n[streams.edited]\nduckdb = \"wh.duckdb\"\ntag = [\"partner\"]\n", nil, "--new-stream"},
	} {
		write(bad, c.body)
		r := cliIn(t, dir, nil, append([]string{"sync", "--config", bad}, c.args...)...)
		want := 2
		if strings.Contains(c.name, "does not open") {
			want = 1 // not a usage error: a file that is not what it should be
		}
		if r.code != want || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: exit %d, want %d saying %q:\n%s", c.name, r.code, want, c.want, r.stderr)
		}
		if strings.Contains(r.stderr, cliKey) {
			t.Errorf("%s: the error repeats the key", c.name)
		}
		for _, p := range []string{"x.duckdb", "g.duckdb", "a.duckdb", "later.duckdb"} {
			if _, err := os.Stat(filepath.Join(conf, p)); err == nil {
				t.Errorf("%s: %s was created", c.name, p)
			}
		}
	}
	// Streams written with dotted keys are streams all the same: the
	// filter is not lost.
	write(bad, "base-url = \""+url+"\"\napi-key-file = \"key\"\nduckdb = \"wh.duckdb\"\n[streams]\nvip.tag = \"vip\"\n")
	r = cliIn(t, dir, nil, "plan", "--config", bad, "--json")
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || r.code != 0 {
		t.Fatalf("plan of dotted keys: %d %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	if !strings.Contains(p.Identity, `"tags":["vip"]`) || !strings.Contains(r.stdout, `"config_stream":"vip"`) {
		t.Errorf("the dotted stream is planned as %s:\n%s", p.Identity, r.stdout)
	}
	// A stream not synced yet is no error for status.
	write(bad, "[streams.later]\nduckdb = \"later.duckdb\"\n")
	if r := cliIn(t, dir, nil, "status", "--config", bad, "--json"); r.code != 0 || !strings.Contains(r.stdout, `"missing":true`) {
		t.Errorf("status of a destination not created yet: %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := cliIn(t, dir, nil, "sync", "--stream", "vip", "--duckdb", "x.duckdb"); r.code != 2 || !strings.Contains(r.stderr, "--config") {
		t.Errorf("--stream without --config: %d %s", r.code, r.stderr)
	}
	if srv.Calls() != calls {
		t.Errorf("the mistakes cost %d calls", srv.Calls()-calls)
	}
}

// TestConfigSettingsOfTwoFlags checks the settings two flags make: the
// command line's or a stream's choice of one overrides the file's choice
// of the other.
func TestConfigSettingsOfTwoFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leadlex.toml")
	for _, c := range []struct {
		name, body string
		args       []string
		check      func(o *syncOptions) bool
	}{
		{"--wait beats no-wait = true", "no-wait = true\n", []string{"--wait"},
			func(o *syncOptions) bool { return o.Wait && !o.NoWait }},
		{"wait = false is no-wait", "wait = false\n", nil,
			func(o *syncOptions) bool { return o.NoWait }},
		{"a stream's wait beats the top's no-wait", "no-wait = true\n[streams.s]\nwait = true\n", nil,
			func(o *syncOptions) bool { return !o.NoWait }},
		{"--api-key-env beats api-key-file", "api-key-file = \"k\"\n", []string{"--api-key-env", "OTHER_KEY"},
			func(o *syncOptions) bool { return o.API.APIKeyFile == "" && o.API.APIKeyEnv == "OTHER_KEY" }},
		{"a stream's api-key-env beats the top's api-key-file", "api-key-file = \"k\"\n[streams.s]\napi-key-env = \"S_KEY\"\n", nil,
			func(o *syncOptions) bool { return o.API.APIKeyFile == "" && o.API.APIKeyEnv == "S_KEY" }},
		{"fields as one string splits as on the command line", "fields = \"email, phone\"\n", nil,
			func(o *syncOptions) bool {
				return slices.Equal(o.fields(), []string{"id", "created_at", "email", "phone"})
			}},
		{"a tag as one string is one tag", "tag = \"a,b\"\n", nil,
			func(o *syncOptions) bool { return slices.Equal(o.Tags, []string{"a,b"}) }},
		{"a whole float is an integer", "max-calls = 1e3\n", nil,
			func(o *syncOptions) bool { return o.MaxCalls == 1000 }},
		{"a local date-time is UTC", "since = 2024-01-02T03:04:05\n", nil,
			func(o *syncOptions) bool { return o.Since == "2024-01-02T03:04:05" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			cf, err := loadConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			sel, err := cf.selectStreams(nil)
			if err != nil {
				t.Fatal(err)
			}
			o := new(syncOptions)
			fs := newSyncFlagSet(o, io.Discard)
			if err := parseFlags(fs, c.args); err != nil {
				t.Fatal(err)
			}
			if err := cf.apply(fs, sel[0]); err != nil {
				t.Fatal(err)
			}
			if !c.check(o) {
				t.Errorf("%s with %v reads as wait %v no-wait %v key file %q env %q fields %v tags %v max-calls %d since %q",
					c.body, c.args, o.Wait, o.NoWait, o.API.APIKeyFile, o.API.APIKeyEnv, o.fields(), o.Tags, o.MaxCalls, o.Since)
			}
			o.DuckDB = filepath.Join(dir, "w.duckdb")
			if _, _, _, err := o.validate(fs); err != nil && !strings.Contains(err.Error(), "API key") {
				t.Errorf("validate: %v", err)
			}
		})
	}
}
