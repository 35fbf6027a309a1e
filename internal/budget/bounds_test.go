package budget

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
)

// hostileFile writes a budgets.json of n entries (about 120 bytes each),
// all live, seen a minute ago.
func hostileFile(t *testing.T, path string, n int) {
	t.Helper()
	now := time.Now().UTC()
	var sb strings.Builder
	sb.WriteString(`{"budgets":{`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"%016x":{"limit":10,"remaining":%d,"reset":%q,"updated_at":%q}`, i, i%10,
			now.Add(30*time.Minute).Format(time.RFC3339Nano), now.Add(-time.Minute).Format(time.RFC3339Nano))
	}
	sb.WriteString(`}}`)
	if err := os.WriteFile(path, []byte(sb.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestALargeFileIsBounded: a file over MaxFileBytes is read no further
// than the cap and is a hint lost (one warning); the next write replaces it
// with the entries that matter. A file under the byte cap with more than
// MaxEntries entries keeps the most recently seen MaxEntries.
func TestALargeFileIsBounded(t *testing.T) {
	s, path := openStore(t)
	hostileFile(t, path, 300_000) // about 36 MB, as in the issue
	var warned []string
	s.Warn = func(msg string, _ ...any) { warned = append(warned, msg) }
	if b, _, err := s.Load("0000000000000001"); err != nil || b.Known {
		t.Errorf("Load of an oversized file: %+v %v", b, err)
	}
	if n := s.bytesRead.Load(); n > MaxFileBytes+1 {
		t.Errorf("Load read %d bytes of an oversized file, the cap is %d", n, MaxFileBytes)
	}
	if len(warned) != 1 {
		t.Errorf("warnings: %q", warned)
	}
	now := time.Now()
	if err := s.Save("mine", extract.RateLimit{Limit: 10, Remaining: 5, Reset: now.Add(time.Hour), Known: true}, now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() > 4096 {
		t.Errorf("after a save the file is %v bytes (%v)", fi.Size(), err)
	}
	if b, _, err := s.Load("mine"); err != nil || b.Remaining != 5 {
		t.Errorf("Load: %+v %v", b, err)
	}

	// Under the byte cap, over the entries cap.
	hostileFile(t, path, MaxEntries+500)
	if err := s.Save("mine", extract.RateLimit{Limit: 10, Remaining: 4, Reset: now.Add(time.Hour), Known: true}, now); err != nil {
		t.Fatal(err)
	}
	var f file
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Budgets) > MaxEntries {
		t.Errorf("%d entries after a save, the cap is %d", len(f.Budgets), MaxEntries)
	}
	if e, ok := f.Budgets["mine"]; !ok || e.Remaining != 4 {
		t.Errorf("the saving key's entry: %+v %v", e, ok)
	}
}

// TestAnswersOfOneHour saves answers of one hour in the order two
// processes may save them: the lower count of calls left is the later
// answer, whichever is saved last; an answer of a later hour replaces it.
func TestAnswersOfOneHour(t *testing.T) {
	s, _ := openStore(t)
	now := time.Now()
	reset := now.Add(40 * time.Minute)
	for i, tc := range []struct {
		remaining int
		reset     time.Time
		seen      time.Time
		want      int
	}{
		{5, reset, now.Add(-3 * time.Second), 5},
		{4, reset.Add(time.Second), now.Add(-2 * time.Second), 4},
		{5, reset, now.Add(-time.Second), 4}, // answered before the 4, saved after it
		{9, reset.Add(time.Hour), now, 9},    // the next hour
	} {
		if err := s.Save("k", extract.RateLimit{Limit: 10, Remaining: tc.remaining, Reset: tc.reset, Known: true}, tc.seen); err != nil {
			t.Fatal(err)
		}
		if b, _, err := s.Load("k"); err != nil || b.Remaining != tc.want {
			t.Errorf("save %d: %d left (%v), want %d", i, b.Remaining, err, tc.want)
		}
	}
}

// TestClaims: runs of one key claim the calls of the hour they mean to
// spend; together they never claim into the reserve; a released claim
// frees its calls; an expired or implausible claim counts for nothing; an
// answer of the API keeps the claims of its hour.
func TestClaims(t *testing.T) {
	s, path := openStore(t)
	now := time.Now()
	b := extract.RateLimit{Limit: 10, Remaining: 8, Reset: now.Add(40 * time.Minute), Known: true}
	claim := func(id string, want, reserve int, b extract.RateLimit) int {
		t.Helper()
		n, err := s.Claim("k", id, want, reserve, b, now)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := claim("a", 7, 2, b); n != 6 {
		t.Errorf("first claim: %d, want 6 (8 left, 2 reserved)", n)
	}
	if n := claim("b", 7, 2, b); n != 0 {
		t.Errorf("second claim: %d, want 0", n)
	}
	if n, err := s.Claimed("k"); err != nil || n != 6 {
		t.Errorf("Claimed: %d %v", n, err)
	}
	// An answer of the API keeps the hour's claims.
	if err := s.Save("k", extract.RateLimit{Limit: 10, Remaining: 7, Reset: b.Reset, Known: true}, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Claimed("k"); n != 6 {
		t.Errorf("Claimed after a save: %d", n)
	}
	// Claiming again replaces the run's claim.
	if n := claim("a", 2, 2, b); n != 2 {
		t.Errorf("a smaller claim: %d", n)
	}
	if n := claim("b", 7, 2, b); n != 3 {
		t.Errorf("claim beside a smaller one: %d, want 3 (7 left, 2 reserved, 2 claimed)", n)
	}
	if err := s.Release("k", "a", extract.RateLimit{}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("k", "b", extract.RateLimit{}, now); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Claimed("k"); n != 0 {
		t.Errorf("Claimed after the releases: %d", n)
	}
	// A crashed run's claim expires at the reset of its hour; a claim
	// expiring beyond any hour the API has is not believed.
	writeEntries(t, path, map[string]map[string]any{"k": {"limit": 10, "remaining": 8, "reset": now.Add(40 * time.Minute), "updated_at": now,
		"claims": map[string]any{
			"expired": map[string]any{"calls": 5, "expires": now.Add(-time.Second)},
			"far":     map[string]any{"calls": 5, "expires": now.Add(72 * time.Hour)},
			"live":    map[string]any{"calls": 1, "expires": now.Add(40 * time.Minute)},
		}}})
	if n, _ := s.Claimed("k"); n != 1 {
		t.Errorf("Claimed with an expired and a far claim: %d, want 1", n)
	}
	if n := claim("c", 9, 2, b); n != 5 {
		t.Errorf("claim beside an expired and a far claim: %d, want 5", n)
	}
	// No budget known: nothing to share, the run keeps what it asked.
	if n, err := s.Claim("other", "d", 3, 2, extract.RateLimit{}, now); err != nil || n != 3 {
		t.Errorf("claim of an unknown budget: %d %v", n, err)
	}
}
