package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
)

// The pages of docs/ show "try it" blocks: shell (and config) a reader
// copies and runs against the fake API. Each follows a comment
// "<!-- try: NAME ... -->", by which the tests below find it and run it as
// written, in a new folder, with the fake API's port 8787 replaced by a
// free one (as TestReadmeQuickStart does for the README's quick start).

// docBlock is a fenced block of a page: its language and its text.
type docBlock struct{ lang, body string }

// tryBlocks returns the fenced blocks that follow the "<!-- try: name"
// comments of the page at path (relative to the repository), in order.
func tryBlocks(t *testing.T, path, name string) []docBlock {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../..", path))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	rest := string(b)
	for {
		var ok bool
		if _, rest, ok = strings.Cut(rest, "<!-- try:"); !ok {
			break
		}
		if f := strings.Fields(rest); len(f) == 0 || strings.TrimSuffix(f[0], "-->") != name {
			continue
		}
		_, after, ok := strings.Cut(rest, "```")
		lang, after, ok2 := strings.Cut(after, "\n")
		body, _, ok3 := strings.Cut(after, "\n```")
		if !ok || !ok2 || !ok3 {
			t.Fatalf("%s: no fenced block after <!-- try: %s", path, name)
		}
		blocks = append(blocks, docBlock{lang: lang, body: body + "\n"})
	}
	if len(blocks) == 0 {
		t.Fatalf("%s has no <!-- try: %s --> block", path, name)
	}
	return blocks
}

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
}

// runTryBlock runs script with bash -e in dir, where leadlex-etl on the
// PATH is this test binary (which doubles as the CLI), with no API key or
// base URL in the environment and a rate-limit budget file of its own, and
// returns what it printed. A failing script fails the test.
func runTryBlock(t *testing.T, dir, script string) string {
	t.Helper()
	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nLEADLEX_ETL_RUN_MAIN=1 exec %q \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(bin, "leadlex-etl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LEADLEX_API_KEY=", "LEADLEX_BASE_URL=", "XDG_STATE_HOME="+t.TempDir(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// Its own process group, killed at the end, so that a failing script
	// does not leave the fake API running; and no wait for the pipes it holds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the block failed: %v\n--- block:\n%s--- output:\n%s", err, script, out)
	}
	return string(out)
}

// wantOutput checks that out holds each of want.
func wantOutput(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the output lacks %q:\n%s", w, out)
		}
	}
}

// shBlock returns the one sh block of the try block name of page.
func shBlock(t *testing.T, page, name string) string {
	t.Helper()
	blocks := tryBlocks(t, page, name)
	if len(blocks) != 1 || blocks[0].lang != "sh" {
		t.Fatalf("%s: <!-- try: %s --> should be one sh block, is %d blocks", page, name, len(blocks))
	}
	return blocks[0].body
}

// TestDocsTryFreshness runs the freshness page's block: edits and
// deletions made at the fake API are found by the second sync's refresh,
// in DuckDB and in the lake.
func TestDocsTryFreshness(t *testing.T) {
	script := strings.ReplaceAll(shBlock(t, "docs/freshness.md", "freshness"), "8787", freePort(t))
	out := runTryBlock(t, t.TempDir(), script)
	wantOutput(t, out, `"deleted":5,"edited":20`,
		"contacts: 10 new, 3005 written again (3005 of them by the refresh, 20 of those changed), 5 marked deleted",
		"live  marked_deleted")
	if n := strings.Count(out, "\n3005  5\n"); n != 2 {
		t.Errorf("%d of the two destinations show 3005 live contacts and 5 marked deleted:\n%s", n, out)
	}
}

// TestDocsTryRateLimit runs the sync page's block: a --no-wait run that
// spends the fake's budget exits 75, the next one exits 75 without a
// request, and a waiting one completes the sync.
func TestDocsTryRateLimit(t *testing.T) {
	dir := t.TempDir()
	script := strings.ReplaceAll(shBlock(t, "docs/sync.md", "ratelimit"), "8787", freePort(t))
	out := runTryBlock(t, dir, script)
	if n := strings.Count(out, "exit code 75"); n != 2 {
		t.Errorf("%d runs exited 75, want 2:\n%s", n, out)
	}
	wantOutput(t, out, "stopped by the rate limit", "the next run resumes with the 1 window still to do",
		"no request made", "sync limited.duckdb: complete")
	if n := count(t, filepath.Join(dir, "limited.duckdb"), "SELECT count(*) FROM contacts"); n != 2500 {
		t.Errorf("the resumed sync holds %d contacts, want 2500", n)
	}
}

// TestDocsTryReplay runs the replay page's block: a replay of the archive
// into a new file, with the API stopped, equals the synced file.
func TestDocsTryReplay(t *testing.T) {
	dir := t.TempDir()
	script := strings.ReplaceAll(shBlock(t, "docs/replay.md", "replay"), "8787", freePort(t))
	out := runTryBlock(t, dir, script)
	wantOutput(t, out, "4 windows of stream", "contacts: 3010 new, 3005 written again, 5 deleted", "the rebuilt copy is identical")
	if n := count(t, filepath.Join(dir, "rebuilt.duckdb"), "SELECT count(*) FROM contacts WHERE _deleted_at IS NOT NULL"); n != 5 {
		t.Errorf("the rebuilt file has %d contacts marked deleted, want 5", n)
	}
}

// TestDocsTryConfig writes the config page's example to leadlex.toml in a
// new folder and runs the block after it, as written: plan, sync and
// status of both streams, and their summaries.
func TestDocsTryConfig(t *testing.T) {
	blocks := tryBlocks(t, "docs/config.md", "config")
	if len(blocks) != 2 || blocks[0].lang != "toml" || blocks[1].lang != "sh" {
		t.Fatalf("docs/config.md: <!-- try: config --> should be a toml block and an sh block, is %+v", blocks)
	}
	port := freePort(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "leadlex.toml"), []byte(strings.ReplaceAll(blocks[0].body, "8787", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := runTryBlock(t, dir, strings.ReplaceAll(blocks[1].body, "8787", port))
	wantOutput(t, out, "stream vip:\nplan for warehouse.duckdb", "stream newsletter:\nplan for warehouse.duckdb and newsletter-lake",
		"stream vip:\nsync warehouse.duckdb: complete", "stream newsletter:\nsync warehouse.duckdb and newsletter-lake: complete",
		"destination: warehouse.duckdb", "destination: newsletter-lake",
		"runs/newsletter.json  complete", "runs/vip.json         complete")
	if strings.Contains(strings.ReplaceAll(out, "key wbk_demo_key)", ""), "wbk_demo_key") {
		t.Errorf("the key shows beyond the fake API's banner:\n%s", out)
	}
}

// TestDocsConfigExample loads the config page's example and checks what it
// sets for a stream.
func TestDocsConfigExample(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leadlex.toml")
	if err := os.WriteFile(path, []byte(tryBlocks(t, "docs/config.md", "config")[0].body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := c.selectStreams([]string{"newsletter"})
	if err != nil {
		t.Fatal(err)
	}
	o := new(syncOptions)
	fs := newSyncFlagSet(o, io.Discard)
	if err := parseFlags(fs, []string{"--limit", "100"}); err != nil {
		t.Fatal(err)
	}
	if err := c.apply(fs, sel[0]); err != nil {
		t.Fatal(err)
	}
	if o.ListID != "lst_12" || o.Since != "2024-01-01" || !o.NoWait || o.Limit != 100 ||
		o.DuckDB != filepath.Join(dir, "warehouse.duckdb") || o.Parquet != filepath.Join(dir, "newsletter-lake") ||
		o.API.BaseURL != "http://127.0.0.1:8787" || o.API.APIKeyFile != filepath.Join(dir, "leadlex.key") ||
		o.SummaryJSON != filepath.Join(dir, "runs/{stream}.json") || len(o.Tags) != 0 {
		t.Errorf("the example's newsletter stream reads as %+v", *o)
	}
}

var (
	mdLink       = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdInlineCode = regexp.MustCompile("`[^`\n]*`")
)

// TestDocsLinks checks every relative link of README.md and docs/*.md: the
// file it names exists and, with #, has a heading of that anchor; and the
// README links every page of docs/.
func TestDocsLinks(t *testing.T) {
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	pages = append(pages, "../../README.md")
	linked := map[string]bool{}
	for _, page := range pages {
		text, _ := markdownText(t, page)
		for _, m := range mdLink.FindAllStringSubmatch(mdInlineCode.ReplaceAllString(text, "``"), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			dest := page
			if file != "" {
				dest = filepath.Join(filepath.Dir(page), file)
			}
			if filepath.Base(page) == "README.md" {
				linked[filepath.Clean(dest)] = true
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s: link %s: %v", page, target, err)
				continue
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s: link %s: an anchor into a file that is not markdown", page, target)
				continue
			}
			if _, anchors := markdownText(t, dest); !slices.Contains(anchors, anchor) {
				t.Errorf("%s: link %s: %s has no heading #%s (it has %v)", page, target, dest, anchor, anchors)
			}
		}
	}
	for _, p := range pages[:len(pages)-1] {
		if !linked[filepath.Clean(p)] {
			t.Errorf("README.md does not link %s", p)
		}
	}
}

// markdownText returns the page at path without its fenced blocks, and the
// anchors of its headings as GitHub makes them.
func markdownText(t *testing.T, path string) (string, []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	var anchors []string
	seen := map[string]int{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		text.WriteString(line + "\n")
		if h := strings.TrimLeft(line, "#"); h != line && strings.HasPrefix(h, " ") {
			a := headingAnchor(h)
			if n := seen[a]; n > 0 {
				seen[a]++
				a = fmt.Sprintf("%s-%d", a, n)
			} else {
				seen[a] = 1
			}
			anchors = append(anchors, a)
		}
	}
	return text.String(), anchors
}

// headingAnchor is GitHub's anchor of a heading: lower case, spaces made
// hyphens, and every character but letters, digits, hyphens and
// underscores dropped.
func headingAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// TestHeadingAnchor checks the anchors the link check expects against
// GitHub's for headings with code, punctuation and apostrophes.
func TestHeadingAnchor(t *testing.T) {
	for h, want := range map[string]string{
		"Rate limits and `--no-wait`":                    "rate-limits-and---no-wait",
		"Stages against DuckDB: `make bench`":            "stages-against-duckdb-make-bench",
		"New streams and another workspace's key":        "new-streams-and-another-workspaces-key",
		"A file changed by hand, or not a DuckDB file":   "a-file-changed-by-hand-or-not-a-duckdb-file",
		"Syncing: `leadlex-etl sync`":                    "syncing-leadlex-etl-sync",
		"Why `id` is not a PRIMARY KEY":                  "why-id-is-not-a-primary-key",
		" Plan, status and streams":                      "plan-status-and-streams",
		"The lake's bloom filters":                       "the-lakes-bloom-filters",
		"snake_case stays":                               "snake_case-stays",
		"Reading while a sync runs (DuckDB) — the rules": "reading-while-a-sync-runs-duckdb--the-rules",
	} {
		if got := headingAnchor(h); got != want {
			t.Errorf("headingAnchor(%q) = %q, want %q", h, got, want)
		}
	}
}
