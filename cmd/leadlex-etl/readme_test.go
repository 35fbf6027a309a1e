package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadmeQuickStart runs the README's hand-made quick start as written,
// in a new folder: the binary is this test binary (it doubles as the CLI),
// so `make build` is skipped, and the fake API's port is a free one.
func TestReadmeQuickStart(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "<!-- quickstart:")
	if !ok {
		t.Fatal("README has no quickstart marker")
	}
	_, block, ok := strings.Cut(after, "```sh\n")
	if ok {
		block, _, ok = strings.Cut(block, "```")
	}
	if !ok {
		t.Fatal("no sh block after the quickstart marker")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\nLEADLEX_ETL_RUN_MAIN=1 exec %q \"$@\"\n", self)
	if err := os.WriteFile(filepath.Join(dir, "bin", "leadlex-etl"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	script := strings.ReplaceAll(block, "8787", port)
	script = strings.Replace(script, "make build\n", "", 1)
	if strings.Contains(script, "make ") {
		t.Fatalf("the quick start runs make beyond make build:\n%s", block)
	}
	cmd := exec.Command("bash", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LEADLEX_API_KEY=", "LEADLEX_BASE_URL=", "XDG_STATE_HOME="+t.TempDir())
	// Its own process group, killed at the end, so a failing script does
	// not leave the fake API running; and no wait for the pipes it holds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	t.Cleanup(func() {
		if cmd.Process != nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the quick start failed: %v\n%s", err, out)
	}
	for _, want := range []string{"complete: 50000 contacts", "full_name", "year  month  contacts", "2020  1"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the quick start's output lacks %q:\n%s", want, out)
		}
	}
}
