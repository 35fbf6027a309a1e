package fakeapi

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var uuidV4Pattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDatasetDeterminism(t *testing.T) {
	tests := []struct {
		name     string
		a, b     int64
		wantSame bool
	}{
		{"same seed", 42, 42, true},
		{"different seed", 42, 43, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newDataset(3000, tt.a)
			b := newDataset(3000, tt.b)
			same := 0
			for i := range a.Len() {
				if reflect.DeepEqual(a.Contact(i), b.Contact(i)) {
					same++
				}
			}
			if tt.wantSame && same != a.Len() {
				t.Errorf("%d of %d contacts equal, want all", same, a.Len())
			}
			if !tt.wantSame && same != 0 {
				t.Errorf("%d of %d contacts equal, want none", same, a.Len())
			}
			ta, na := a.LargestGroup()
			tb, nb := b.LargestGroup()
			if tt.wantSame != (ta.Equal(tb) && na == nb) {
				t.Errorf("largest groups %s x%d and %s x%d", ta, na, tb, nb)
			}
		})
	}
}

func TestDatasetShape(t *testing.T) {
	for _, n := range []int{1, 7, 10000} {
		t.Run("n="+strconv.Itoa(n), func(t *testing.T) {
			d := newDataset(n, 1)
			if d.Len() != n {
				t.Fatalf("Len %d, want %d", d.Len(), n)
			}
			first := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
			end := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var prev time.Time
			group, largest := 0, 0
			for i := range n {
				c := d.Contact(i)
				ct := c.CreatedAt
				if ct.Location() != time.UTC || ct.Nanosecond() != 0 || ct.Before(first) || !ct.Before(end) {
					t.Fatalf("contact %d created_at %v not a whole UTC second in 2020-2025", i, ct)
				}
				if ct.Before(prev) {
					t.Fatalf("contact %d created before contact %d", i, i-1)
				}
				if ct.Equal(prev) {
					group++
				} else {
					group = 1
				}
				largest = max(largest, group)
				prev = ct
				if !d.CreatedAt(i).Equal(ct) {
					t.Fatalf("CreatedAt(%d) disagrees with Contact", i)
				}
				if !uuidV4Pattern.MatchString(c.ID) {
					t.Fatalf("id %q is not a version 4 UUID", c.ID)
				}
				if j, ok := d.Index(c.ID); !ok || j != i {
					t.Fatalf("Index(%s) = %d, %v; want %d", c.ID, j, ok, i)
				}
				if j, ok := d.Index(strings.ToUpper(c.ID)); !ok || j != i {
					t.Fatalf("Index of upper-case id = %d, %v", j, ok)
				}
				for _, s := range []string{c.FullName, c.Email, c.City, c.Country} {
					if s == "" || !utf8.ValidString(s) {
						t.Fatalf("contact %d has an empty or invalid required field: %+v", i, c)
					}
				}
				if c.LeadScore < 0 || c.LeadScore > 100 || len(c.Tags) > 4 || len(c.ListIDs) > 3 {
					t.Fatalf("contact %d out of range: %+v", i, c)
				}
			}
			if _, n2 := d.LargestGroup(); n2 != largest {
				t.Errorf("LargestGroup n = %d, scan says %d", n2, largest)
			}
			if n == 10000 {
				if largest < 5 {
					t.Errorf("largest group of 10000 contacts is %d; want shared seconds", largest)
				}
				if y := d.CreatedAt(0).Year(); y != 2020 {
					t.Errorf("first contact in %d, want 2020", y)
				}
				if last := d.CreatedAt(n - 1); last.Year() != 2025 || last.Month() < 10 {
					t.Errorf("last contact at %s, want late 2025", last)
				}
			}
		})
	}
	d := newDataset(100, 1)
	for _, id := range []string{"", "not-a-uuid", "00000000-0000-4000-8000-000000000000", d.Contact(0).ID[:35] + "x", strings.Replace(d.Contact(0).ID, "-", "x", 1)} {
		if _, ok := d.Index(id); ok {
			t.Errorf("Index(%q) found a contact", id)
		}
	}
}

// TestDatasetRealism checks the field distributions the spec asks for.
func TestDatasetRealism(t *testing.T) {
	d := newDataset(20000, 1)
	count := map[string]int{}
	for i := range d.Len() {
		c := d.Contact(i)
		tags, _ := c.Field("tags")
		for name, ok := range map[string]bool{
			"no linkedin":  c.LinkedInURL == "",
			"no tags":      len(c.Tags) == 0,
			"spaced tags":  strings.Contains(tags, ", "),
			"no phone":     c.Phone == "",
			"no job":       c.JobTitle == "",
			"no company":   c.CompanyName == "",
			"no notes":     c.Notes == "",
			"no lists":     len(c.ListIDs) == 0,
			"notes break":  strings.Contains(c.Notes, "\n"),
			"non-ASCII":    !isASCII(c.FullName),
			"ASCII email":  isASCII(c.Email) && strings.Count(c.Email, "@") == 1,
			"CJK name":     strings.ContainsAny(c.FullName, "王李张刘陈佐鈴김"),
			"comma quote":  strings.Contains(c.CompanyName, ",") || strings.Contains(c.CompanyName, `"`),
			"4 tags":       len(c.Tags) == 4,
			"score 100":    c.LeadScore == 100,
			"phone format": strings.HasPrefix(c.Phone, "+") || strings.HasPrefix(c.Phone, "("),
		} {
			if ok {
				count[name]++
			}
		}
	}
	frac := func(name string) float64 { return float64(count[name]) / float64(d.Len()) }
	tests := []struct {
		name   string
		lo, hi float64
	}{
		{"no linkedin", 0.27, 0.33},
		{"no tags", 0.17, 0.23},
		{"spaced tags", 0.01, 0.2},
		{"no phone", 0.05, 0.2},
		{"no job", 0.03, 0.15},
		{"no company", 0.05, 0.15},
		{"no notes", 0.3, 0.5},
		{"no lists", 0.2, 0.3},
		{"notes break", 0.05, 0.5},
		{"non-ASCII", 0.3, 0.9},
		{"ASCII email", 1, 1},
		{"CJK name", 0.03, 0.15},
		{"comma quote", 0.1, 0.5},
		{"4 tags", 0.01, 0.15},
		{"score 100", 0.001, 0.05},
		{"phone format", 0.3, 0.9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if f := frac(tt.name); f < tt.lo || f > tt.hi {
				t.Errorf("fraction %.3f outside [%.3f, %.3f]", f, tt.lo, tt.hi)
			}
		})
	}
}

// TestDataset1M checks ids are unique over a million contacts and that such
// a dataset has bulk imports.
func TestDataset1M(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a million contacts")
	}
	d := newDataset(1_000_000, 1)
	seen := make(map[[2]uint64]int32, d.Len())
	for i := range d.Len() {
		hi, lo := d.uuid(i)
		if j, dup := seen[[2]uint64{hi, lo}]; dup {
			t.Fatalf("contacts %d and %d share id %s", j, i, d.Contact(i).ID)
		}
		seen[[2]uint64{hi, lo}] = int32(i)
	}
	for _, i := range []int{0, 1, 499_999, 999_999} {
		c := d.Contact(i)
		if !uuidV4Pattern.MatchString(c.ID) {
			t.Errorf("id %q is not a version 4 UUID", c.ID)
		}
		if j, ok := d.Index(c.ID); !ok || j != i {
			t.Errorf("Index(%s) = %d, %v; want %d", c.ID, j, ok, i)
		}
	}
	at, n := d.LargestGroup()
	if n < 200 || n > 2000 {
		t.Errorf("largest group %d contacts at %s, want a bulk import of hundreds to 2000", n, at)
	}
	shared := 0
	for i := 1; i < d.Len(); i++ {
		if d.created[i] == d.created[i-1] {
			shared++
		}
	}
	if shared < d.Len()/4 {
		t.Errorf("only %d contacts share a second with the one before", shared)
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func TestMutations(t *testing.T) {
	srv, ts := newTestServer(t, Config{Contacts: 100, Seed: 8})
	before := srv.Dataset()
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if err := srv.Append(3, now); err != nil {
		t.Fatal(err)
	}
	if err := srv.Append(1, now.Add(-24*time.Hour)); err == nil {
		t.Error("appending before the last contact was accepted")
	}
	srv.Edit(5, 7)
	srv.Delete(9, 101)
	d := srv.Dataset()
	if before.Len() != 100 || d.Len() != 103 || d.Live() != 101 {
		t.Fatalf("lengths: before %d, now %d, live %d", before.Len(), d.Len(), d.Live())
	}
	for i := 100; i < 103; i++ {
		if c := d.Contact(i); !c.CreatedAt.Equal(now) || c.Deleted != (i == 101) {
			t.Errorf("appended contact %d: %+v", i, c)
		} else if j, ok := d.Index(c.ID); !ok || j != i {
			t.Errorf("appended contact %d: Index gives %d %v", i, j, ok)
		}
	}
	for _, i := range []int{5, 7} {
		old, c := before.Contact(i), d.Contact(i)
		if c.ID != old.ID || !c.CreatedAt.Equal(old.CreatedAt) || c.FullName == old.FullName && c.Email == old.Email {
			t.Errorf("edit of %d: %+v from %+v", i, c, old)
		}
	}
	if c := d.Contact(6); !reflect.DeepEqual(c, before.Contact(6)) {
		t.Errorf("an unedited contact changed: %+v", c)
	}
	// Exports see the edits, not the deleted, and the new ones.
	_, recs := export(t, ts, "limit=50000")
	got := map[string][]string{}
	for _, r := range recs[1:] {
		got[r[0]] = r
	}
	if len(got) != 101 {
		t.Errorf("export has %d contacts, want 101", len(got))
	}
	if _, ok := got[d.Contact(9).ID]; ok {
		t.Error("a deleted contact is exported")
	}
	if r := got[d.Contact(5).ID]; r[1] != d.Contact(5).FullName {
		t.Errorf("edited contact exported as %v, want name %q", r, d.Contact(5).FullName)
	}
	// Editing a deleted contact brings it back.
	srv.Edit(9)
	if c := srv.Dataset().Contact(9); c.Deleted || srv.Dataset().Live() != 102 {
		t.Errorf("contact 9 after an edit: %+v", c)
	}
}
