package pipeline_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

const testKey = "wbk_test_S3CR3T_pipeline_key"

func startFake(t testing.TB, cfg fakeapi.Config) (*fakeapi.Server, string) {
	t.Helper()
	cfg.Keys = []fakeapi.Key{{Token: testKey, Workspace: "acme", ReadContacts: true}}
	srv, err := fakeapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return srv, hs.URL
}

func openDB(t testing.TB, path string) *load.DuckDB {
	t.Helper()
	db, err := load.OpenDuckDB(context.Background(), path, load.DuckDBOptions{MemoryLimit: "1GB", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

type syncArgs struct {
	limit        int
	since, until time.Time
	tags         []string
	listID       string
	fields       []string
	maxCalls     int
	lookback     time.Duration
	now          time.Time // the run's clock (zero: time.Now)
}

func runSync(t testing.TB, url string, db *load.DuckDB, a syncArgs) (pipeline.Result, error) {
	t.Helper()
	return syncTargets(t, url, a, db)
}

// row is one contacts row read back from DuckDB, NULLs as "".
type row struct {
	ID, FullName, Email, Phone, JobTitle, Company, LinkedIn string
	Tags                                                    []string
	CreatedAt                                               time.Time
	RequestID                                               string
}

// readContactsFrom reads contacts from a table or table function (a lake:
// read_parquet(...)).
func readContactsFrom(t testing.TB, db *sql.DB, from string) map[string]row {
	t.Helper()
	rows, err := db.Query(`SELECT id::VARCHAR, coalesce(full_name, ''), coalesce(email, ''), coalesce(phone, ''), coalesce(job_title, ''),
		coalesce(company_name, ''), coalesce(linkedin_url, ''), tags, epoch_us(created_at), coalesce(_request_id, '') FROM ` + from)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]row{}
	for rows.Next() {
		var r row
		var tags []any
		var us int64
		if err := rows.Scan(&r.ID, &r.FullName, &r.Email, &r.Phone, &r.JobTitle, &r.Company, &r.LinkedIn, &tags, &us, &r.RequestID); err != nil {
			t.Fatal(err)
		}
		for _, tag := range tags {
			r.Tags = append(r.Tags, tag.(string))
		}
		r.CreatedAt = time.UnixMicro(us).UTC()
		if _, dup := out[r.ID]; dup {
			t.Fatalf("id %s is in contacts twice", r.ID)
		}
		out[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkEqualsDataset fails unless the contacts table holds exactly the
// dataset's contacts for which keep is true, field by field.
func checkEqualsDataset(t testing.TB, db *sql.DB, ds *fakeapi.Dataset, keep func(fakeapi.Contact) bool) {
	t.Helper()
	checkEqualsDatasetFrom(t, db, "contacts", ds, keep)
}

func checkEqualsDatasetFrom(t testing.TB, db *sql.DB, from string, ds *fakeapi.Dataset, keep func(fakeapi.Contact) bool) {
	t.Helper()
	if diff := datasetDiff(t, db, from, ds, keep); diff != "" {
		t.Fatal(diff)
	}
}

// datasetDiff describes the first difference between from and the
// dataset's contacts for which keep is true, "" when there is none.
func datasetDiff(t testing.TB, db *sql.DB, from string, ds *fakeapi.Dataset, keep func(fakeapi.Contact) bool) string {
	t.Helper()
	got := readContactsFrom(t, db, from)
	want := 0
	for i := 0; i < ds.Len(); i++ {
		c := ds.Contact(i)
		if keep != nil && !keep(c) {
			continue
		}
		want++
		r, ok := got[c.ID]
		if !ok {
			return fmt.Sprintf("contact %s (created %s) is missing", c.ID, c.CreatedAt)
		}
		exp := row{ID: c.ID, FullName: c.FullName, Email: c.Email, Phone: c.Phone, JobTitle: c.JobTitle, Company: c.CompanyName,
			LinkedIn: c.LinkedInURL, Tags: c.Tags, CreatedAt: c.CreatedAt.UTC(), RequestID: r.RequestID}
		if len(exp.Tags) == 0 {
			exp.Tags = nil
		}
		if fmt.Sprintf("%q", r) != fmt.Sprintf("%q", exp) {
			return fmt.Sprintf("contact %s differs:\n got  %q\n want %q", c.ID, r, exp)
		}
		if r.RequestID == "" {
			return fmt.Sprintf("contact %s has no request id", c.ID)
		}
	}
	if len(got) != want {
		return fmt.Sprintf("%s has %d rows, want %d", from, len(got), want)
	}
	return ""
}

func TestRoundTripEveryOrderAndBound(t *testing.T) {
	for _, order := range []fakeapi.Order{fakeapi.OrderAsc, fakeapi.OrderDesc, fakeapi.OrderRandom} {
		for _, bounds := range []fakeapi.Bounds{fakeapi.BoundsInclusive, fakeapi.BoundsExclusive, fakeapi.BoundsMixed} {
			t.Run(string(order)+"/"+string(bounds), func(t *testing.T) {
				t.Parallel()
				srv, url := startFake(t, fakeapi.Config{Contacts: 30000, Seed: 42, Order: order, Bounds: bounds, TimeFormat: fakeapi.TimeOffset})
				db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
				res, err := runSync(t, url, db, syncArgs{limit: 5000})
				if err != nil {
					t.Fatal(err)
				}
				if !res.Complete || len(res.Pending) != 0 {
					t.Fatalf("sync not complete: %+v", res)
				}
				checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
				if res.Distinct != 30000 || res.MinCalls != 6 {
					t.Errorf("result counts %d distinct contacts, minimum %d calls; want 30000 and 6", res.Distinct, res.MinCalls)
				}
				t.Logf("%d calls (minimum %d), %d rows received", res.Calls, res.MinCalls, res.Rows)

				// A second run costs one call and changes nothing.
				res2, err := runSync(t, url, db, syncArgs{limit: 5000})
				if err != nil {
					t.Fatal(err)
				}
				if res2.Calls != 1 {
					t.Errorf("incremental run used %d calls, want 1", res2.Calls)
				}
				checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
			})
		}
	}
}

func TestOverlappingWindowsLeaveNoDuplicates(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 20000, Seed: 7, Order: fakeapi.OrderRandom})
	ds := srv.Dataset()
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	at := func(i int) time.Time { return ds.Contact(i).CreatedAt }
	// [a, c) then [b, d) with b < c, then everything (an explicit --since
	// before the first contact: without it the run would go on from the
	// cursor, d).
	for _, w := range [][2]time.Time{{at(1000), at(12000)}, {at(8000), at(19000)}, {at(0).Add(-time.Hour), {}}} {
		if _, err := runSync(t, url, db, syncArgs{limit: 3000, since: w[0], until: w[1]}); err != nil {
			t.Fatal(err)
		}
	}
	checkEqualsDataset(t, db.DB(), ds, nil)
}

func TestFilteredSyncKeepsItsOwnCursor(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 5000, Seed: 8})
	ds := srv.Dataset()
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	// Half a second after a contact: the data has whole seconds, so no
	// contact sits on the bound whichever bound rule the API has.
	mid := ds.Contact(2500).CreatedAt.Add(500 * time.Millisecond)
	res, err := runSync(t, url, db, syncArgs{until: mid})
	if err != nil {
		t.Fatal(err)
	}
	unfiltered, _ := pipeline.StreamIdentity(url, extract.Query{})
	before, err := db.LoadState(context.Background(), unfiltered, "")
	if err != nil {
		t.Fatal(err)
	}
	if !before.Cursor().Equal(mid) || !res.Cursor.Equal(mid) {
		t.Fatalf("unfiltered cursor %s, result %s; want %s", before.Cursor(), res.Cursor, mid)
	}
	fres, err := runSync(t, url, db, syncArgs{tags: []string{"vip"}})
	if err != nil {
		t.Fatal(err)
	}
	if fres.StreamID == unfiltered {
		t.Fatal("the filtered sync has the unfiltered stream's id")
	}
	after, err := db.LoadState(context.Background(), unfiltered, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after.Coverage, before.Coverage) {
		t.Errorf("a --tag sync changed the unfiltered stream's coverage from %v to %v", before.Coverage, after.Coverage)
	}
	// A list sync is a stream of its own too.
	lres, err := runSync(t, url, db, syncArgs{listID: "lst_03"})
	if err != nil {
		t.Fatal(err)
	}
	if lres.StreamID == unfiltered || lres.StreamID == fres.StreamID {
		t.Fatal("the --list-id sync shares a stream id")
	}
	// The table holds the unfiltered first half, every vip contact and
	// every contact on lst_03.
	checkEqualsDataset(t, db.DB(), ds, func(c fakeapi.Contact) bool {
		return c.CreatedAt.Before(mid) || slices.Contains(c.Tags, "vip") || slices.Contains(c.ListIDs, "lst_03")
	})
}

func TestMaxCallsStopsAndResumes(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 20000, Seed: 9})
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	until := time.Now().UTC().Truncate(time.Microsecond) // instants have µs precision
	total := 0
	for i := 0; ; i++ {
		res, err := runSync(t, url, db, syncArgs{limit: 2000, maxCalls: 3, until: until})
		if err != nil {
			t.Fatal(err)
		}
		total += res.Calls
		if res.Calls > 3 {
			t.Fatalf("run %d used %d calls, cap 3", i, res.Calls)
		}
		if res.Complete {
			if !res.Cursor.Equal(until) {
				t.Errorf("cursor %s, want %s", res.Cursor, until)
			}
			break
		}
		if len(res.Pending) == 0 {
			t.Fatal("incomplete run with nothing pending")
		}
		if i > 20 {
			t.Fatal("never completes")
		}
	}
	checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
	if total > extract.MinCalls(20000, 2000-200)+1 {
		t.Errorf("resumed runs used %d calls in all", total)
	}
}

func TestExtraFieldsBecomeTextColumns(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 12})
	ds := srv.Dataset()
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	// A default-fields sync first, then one that adds extra fields.
	if _, err := runSync(t, url, db, syncArgs{}); err != nil {
		t.Fatal(err)
	}
	fields := []string{"id", "created_at", "full_name", "tags", "city", "notes", "lead_score", "list_ids"}
	if _, err := runSync(t, url, db, syncArgs{fields: fields}); err != nil {
		t.Fatal(err)
	}
	rows, err := db.DB().Query(`SELECT id::VARCHAR, coalesce(city, ''), coalesce(notes, ''), lead_score, coalesce(list_ids, ''), typeof(city), typeof(lead_score) FROM contacts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id, city, notes, score, lists, cityType, scoreType string
		if err := rows.Scan(&id, &city, &notes, &score, &lists, &cityType, &scoreType); err != nil {
			t.Fatal(err)
		}
		i, ok := ds.Index(id)
		if !ok {
			t.Fatalf("unknown id %s", id)
		}
		c := ds.Contact(i)
		wantScore, _ := c.Field("lead_score")
		wantLists, _ := c.Field("list_ids")
		if city != c.City || notes != c.Notes || score != wantScore || lists != wantLists {
			t.Fatalf("contact %s: got %q %q %q %q, want %q %q %q %q", id, city, notes, score, lists, c.City, c.Notes, wantScore, wantLists)
		}
		if cityType != "VARCHAR" || scoreType != "VARCHAR" {
			t.Fatalf("extra fields typed %s, %s; want VARCHAR", cityType, scoreType)
		}
		n++
	}
	if n != ds.Len() {
		t.Errorf("%d rows, want %d", n, ds.Len())
	}
	// The fields the second sync did not ask for kept their values.
	checkEqualsDataset(t, db.DB(), ds, nil)
	// And a default-fields sync keeps the extra columns.
	if _, err := runSync(t, url, db, syncArgs{since: ds.Contact(0).CreatedAt.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var cities int
	if err := db.DB().QueryRow(`SELECT count(city) FROM contacts`).Scan(&cities); err != nil || cities == 0 {
		t.Errorf("a default-fields sync wiped the city column (%d non-NULL, %v)", cities, err)
	}
}

// TestFaultsNeverCorruptTheTable syncs through a fake API that fails,
// cuts off and slows down a good share of its answers, into both sinks,
// and checks the result is still exactly the dataset.
func TestFaultsNeverCorruptTheTable(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 20000, Seed: 17, Order: fakeapi.OrderRandom,
		FailRate: 0.2, CutRate: 0.2, SlowRate: 0.1, SlowDelay: time.Millisecond})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	c := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), Retry: extract.RetryPolicy{MaxAttempts: 20, BaseDelay: time.Millisecond, MaxDelay: 2 * time.Millisecond}}
	res, err := pipeline.Sync(context.Background(), pipeline.Options{
		Client: c, Query: extract.Query{Limit: 2500}, Targets: []load.Target{db, lake},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Calls <= res.Windows {
		t.Errorf("%d calls for %d windows: the faults did not happen", res.Calls, res.Windows)
	}
	t.Logf("%d windows, %d calls with faults", res.Windows, res.Calls)
	checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
	checkEqualsDatasetFrom(t, db.DB(), lakeFrom(filepath.Join(dir, "lake")), srv.Dataset(), nil)
}

// TestAGrowingWorkspace syncs a workspace that grows between runs, as a
// real one does: contacts created since the last run, contacts that arrive
// late (created before the cursor, exported only now) inside and outside
// the lookback, and a run stopped at --max-calls that resumes after more
// contacts came. Both sinks end with exactly what the API then holds.
func TestAGrowingWorkspace(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 6000, Seed: 21, Order: fakeapi.OrderRandom})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	t0 := time.Now().Add(-10 * time.Hour).UTC().Truncate(time.Second)
	sync := func(a syncArgs) pipeline.Result {
		t.Helper()
		res, err := syncTargets(t, url, a, db, lake)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	both := func(keep func(fakeapi.Contact) bool) {
		t.Helper()
		checkEqualsDataset(t, db.DB(), srv.Dataset(), keep)
		checkEqualsDatasetFrom(t, db.DB(), lakeFrom(filepath.Join(dir, "lake")), srv.Dataset(), keep)
	}
	res := sync(syncArgs{limit: 2000, lookback: time.Hour, now: t0})
	if !res.Complete || !res.Cursor.Equal(t0) {
		t.Fatalf("first run: complete %v, cursor %s, want %s", res.Complete, res.Cursor, t0)
	}
	both(nil)

	// An hour later: 200 contacts arrived late, created 20 minutes before
	// the cursor, and 300 new ones.
	if err := srv.Append(200, t0.Add(-20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Append(300, t0.Add(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	res = sync(syncArgs{limit: 2000, lookback: time.Hour, now: t0.Add(time.Hour)})
	if res.Calls != 1 || !res.Since.Equal(t0.Add(-time.Hour)) || !res.Cursor.Equal(t0.Add(time.Hour)) {
		t.Errorf("second run: %d calls, since %s, cursor %s; want 1 call from the cursor less the lookback", res.Calls, res.Since, res.Cursor)
	}
	if res.Distinct != 500 {
		t.Errorf("second run loaded %d contacts, want the 500 that came", res.Distinct)
	}
	both(nil)

	// Late arrivals older than the lookback are not seen by an incremental
	// run (a full re-sync or --since finds them).
	if err := srv.Append(50, t0.Add(40*time.Minute)); err != nil {
		t.Fatal(err)
	}
	res = sync(syncArgs{limit: 2000, lookback: 10 * time.Minute, now: t0.Add(2 * time.Hour)})
	if !res.Since.Equal(t0.Add(50 * time.Minute)) {
		t.Errorf("third run since %s, want the cursor less 10 minutes", res.Since)
	}
	late := srv.Dataset().Len() - 50
	notLate := func(c fakeapi.Contact) bool {
		i, _ := srv.Dataset().Index(c.ID)
		return i < late || i >= late+50
	}
	both(notLate)

	// A run stopped at --max-calls, more contacts, and the resumed run.
	for k := range 3 {
		if err := srv.Append(1500, t0.Add(3*time.Hour+time.Duration(k)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	res = sync(syncArgs{limit: 2000, lookback: time.Hour, now: t0.Add(4 * time.Hour), maxCalls: 1})
	if res.Complete || len(res.Pending) == 0 {
		t.Fatalf("the capped run completed: %+v", res)
	}
	if err := srv.Append(100, t0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	res = sync(syncArgs{limit: 2000, lookback: time.Hour, now: t0.Add(6 * time.Hour)})
	if !res.Complete || !res.WasResume || !res.Cursor.Equal(t0.Add(6*time.Hour)) {
		t.Errorf("resumed run: complete %v, resume %v, cursor %s", res.Complete, res.WasResume, res.Cursor)
	}
	both(notLate)
	// A run with --since over the late ones picks them up.
	sync(syncArgs{limit: 2000, since: t0, now: t0.Add(7 * time.Hour)})
	both(nil)
}

// TestCursorAndRunStatus checks that a run with a later --since never moves
// the cursor over the gap it skipped, and that each run records how it
// ended: ok, partial (stopped at --max-calls) or failed.
func TestCursorAndRunStatus(t *testing.T) {
	srv, url := startFake(t, fakeapi.Config{Contacts: 3000, Seed: 22})
	dir := t.TempDir()
	db := openDB(t, filepath.Join(dir, "w.duckdb"))
	lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
	t0 := time.Now().Add(-10 * time.Hour).UTC().Truncate(time.Second)
	run := func(a syncArgs) (pipeline.Result, error) {
		t.Helper()
		return syncTargets(t, url, a, db, lake)
	}
	if _, err := run(syncArgs{limit: 1000, now: t0}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Append(10, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Append(10, t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// Only the last hour: the cursor stays where the covered range ends.
	res, err := run(syncArgs{limit: 1000, since: t0.Add(2 * time.Hour), now: t0.Add(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cursor.Equal(t0) {
		t.Errorf("cursor %s after a run from a later --since, want it to stay %s", res.Cursor, t0)
	}
	// The next incremental run fetches the gap.
	if res, err = run(syncArgs{limit: 1000, now: t0.Add(5 * time.Hour)}); err != nil || !res.Since.Equal(t0) {
		t.Fatalf("incremental run since %s (%v), want %s", res.Since, err, t0)
	}
	checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)

	// Statuses: a capped run is partial, a failed one failed.
	if _, err := run(syncArgs{limit: 1000, since: time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC), now: t0.Add(6 * time.Hour), maxCalls: 1}); err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(fakeapi.Fault500, fakeapi.Fault500, fakeapi.Fault500, fakeapi.Fault500)
	if _, err := run(syncArgs{limit: 1000, now: t0.Add(7 * time.Hour)}); err == nil {
		t.Fatal("a run against four 500s in a row succeeded")
	}
	for _, tgt := range []load.Target{db, lake} {
		runs, err := tgt.Runs(context.Background(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range runs {
			got = append(got, r.Status)
		}
		if want := []string{"failed", "partial", "ok", "ok", "ok"}; !slices.Equal(got, want) {
			t.Errorf("%T: run statuses newest first %v, want %v", tgt, got, want)
		}
		if runs[0].Error == "" || runs[1].Windows != 1 || runs[1].Calls != 1 || runs[1].Rows != 1000 {
			t.Errorf("%T: failed run %+v, partial run %+v", tgt, runs[0], runs[1])
		}
	}
}

// TestEquivalentCommandLinesAreOneStream checks that trivial differences
// (host case and loopback alias, trailing slash, default port, the default
// field list spelled out, field and tag order) make the same stream, and
// that a command line that would start a new stream from the beginning next
// to others is refused unless asked for.
func TestEquivalentCommandLinesAreOneStream(t *testing.T) {
	base, _ := pipeline.StreamIdentity("http://127.0.0.1:8787", extract.Query{})
	for _, tc := range []struct {
		url string
		q   extract.Query
	}{
		{"http://localhost:8787/", extract.Query{}},
		{"HTTP://LocalHost:8787//", extract.Query{}},
		{"http://[::1]:8787", extract.Query{}},
		{"http://127.0.0.1:8787", extract.Query{Fields: []string{"tags", "created_at", "id", "full_name", "email", "phone", "job_title", "company_name", "linkedin_url"}}},
		{"http://127.0.0.1:8787", extract.Query{Fields: []string{"full_name", "email", "phone", "job_title", "company_name", "linkedin_url", "tags"}}},
	} {
		if id, ident := pipeline.StreamIdentity(tc.url, tc.q); id != base {
			t.Errorf("%s %v: stream %s %s, want the default stream %s", tc.url, tc.q.Fields, id, ident, base)
		}
	}
	a, _ := pipeline.StreamIdentity("https://api.example.com:443/gw/", extract.Query{Tags: []string{"vip", "lead", "vip"}, Fields: []string{"city", "id"}})
	b, _ := pipeline.StreamIdentity("https://API.example.com/gw", extract.Query{Tags: []string{"lead", "vip"}, Fields: []string{"created_at", "city"}})
	if a != b {
		t.Errorf("equivalent filtered streams differ: %s %s", a, b)
	}
	for _, other := range []extract.Query{{Tags: []string{"vip"}}, {ListID: "lst_01"}, {Fields: []string{"city"}}} {
		if id, _ := pipeline.StreamIdentity("http://127.0.0.1:8787", other); id == base {
			t.Errorf("%+v is the default stream", other)
		}
	}

	// A sync spelled differently continues the stream; a new stream from the
	// beginning next to it is refused, unless asked for or with --since.
	srv, url := startFake(t, fakeapi.Config{Contacts: 2000, Seed: 3})
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	sync := func(base string, q extract.Query, since time.Time, newStream bool) (pipeline.Result, error) {
		q.Limit = 1000
		c := &extract.Client{BaseURL: base, Key: extract.NewAPIKey(testKey)}
		return pipeline.Sync(context.Background(), pipeline.Options{Client: c, Query: q, Since: since, Targets: []load.Target{db}, NewStream: newStream})
	}
	first, err := sync(url, extract.Query{}, time.Time{}, false)
	if err != nil {
		t.Fatal(err)
	}
	calls := srv.Calls()
	again, err := sync(strings.Replace(url, "127.0.0.1", "localhost", 1)+"/", extract.Query{Fields: []string{"created_at", "id", "full_name", "email", "phone", "job_title", "company_name", "linkedin_url", "tags"}}, time.Time{}, false)
	if err != nil || again.StreamID != first.StreamID || srv.Calls()-calls != 1 {
		t.Fatalf("the same stream spelled otherwise: %v, stream %s (want %s), %d calls (want 1)", err, again.StreamID, first.StreamID, srv.Calls()-calls)
	}
	calls = srv.Calls()
	_, err = sync(url, extract.Query{Tags: []string{"vip"}}, time.Time{}, false)
	var ns *pipeline.NewStreamError
	if !errors.As(err, &ns) || srv.Calls() != calls || len(ns.Existing) != 1 || ns.Existing[0].StreamID != first.StreamID {
		t.Fatalf("a new stream next to another: %v after %d calls; want a *NewStreamError naming the existing stream, no call", err, srv.Calls()-calls)
	}
	if _, err := sync(url, extract.Query{Tags: []string{"vip"}}, time.Time{}, true); err != nil {
		t.Errorf("with NewStream: %v", err)
	}
	if _, err := sync(url, extract.Query{ListID: "lst_01"}, time.Now().Add(-time.Hour), false); err != nil {
		t.Errorf("a new stream with --since: %v", err)
	}
}

// TestTargetsAtDifferentCursors syncs into a DuckDB file that is ahead of a
// lake (a lake added to an existing sync): the run covers what the one
// behind needs, and the cursor saved with it never passes what that one
// holds, so the next incremental run leaves both with every contact.
func TestTargetsAtDifferentCursors(t *testing.T) {
	t0 := time.Now().Add(-10 * time.Hour).UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name                  string
		since                 time.Time
		wantSince, wantCursor time.Time
	}{
		{"incremental: from the cursor behind", time.Time{}, t0, t0.Add(3 * time.Hour)},
		{"--since past the cursor behind: the gap stays to sync", t0.Add(90 * time.Minute), t0.Add(90 * time.Minute), t0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, url := startFake(t, fakeapi.Config{Contacts: 2000, Seed: 23})
			// Ten contacts the DuckDB file has and the lake has not.
			if err := srv.Append(10, t0.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			db := openDB(t, filepath.Join(dir, "w.duckdb"))
			lake := openLake(t, filepath.Join(dir, "lake"), load.LakeOptions{})
			if _, err := syncTargets(t, url, syncArgs{now: t0}, lake); err != nil {
				t.Fatal(err)
			}
			if _, err := syncTargets(t, url, syncArgs{now: t0.Add(2 * time.Hour)}, db); err != nil {
				t.Fatal(err)
			}
			res, err := syncTargets(t, url, syncArgs{since: tc.since, now: t0.Add(3 * time.Hour)}, db, lake)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Since.Equal(tc.wantSince) || !res.Cursor.Equal(tc.wantCursor) {
				t.Errorf("run since %s, cursor %s; want %s and %s", res.Since, res.Cursor, tc.wantSince, tc.wantCursor)
			}
			id, identity := pipeline.StreamIdentity(url, extract.Query{})
			if st, err := lake.LoadState(context.Background(), id, identity); err != nil || !st.Cursor().Equal(tc.wantCursor) {
				t.Errorf("the lake's cursor %s (%v), want %s", st.Cursor(), err, tc.wantCursor)
			}
			if _, err := syncTargets(t, url, syncArgs{now: t0.Add(4 * time.Hour)}, db, lake); err != nil {
				t.Fatal(err)
			}
			checkEqualsDataset(t, db.DB(), srv.Dataset(), nil)
			checkEqualsDatasetFrom(t, db.DB(), lakeFrom(filepath.Join(dir, "lake")), srv.Dataset(), nil)
		})
	}
}

// TestPlanRun checks the range a run covers, from the stream's state and
// the flags: the windows to export, and the range (since, until) whose
// completion moves the cursor.
func TestPlanRun(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2025, 6, 1, h, 0, 0, 0, time.UTC) }
	pending := []extract.Window{{From: at(1), To: at(2)}, {From: at(3), To: at(4)}}
	interrupted := load.StreamState{Coverage: load.Coverage{{To: at(0)}}, Pending: pending, PendingSince: at(1), PendingUntil: at(4)}
	for _, tc := range []struct {
		name                 string
		st                   load.StreamState
		since, until         time.Time
		lookback             time.Duration
		want                 []extract.Window
		wantSince, wantUntil time.Time
	}{
		{"first run: all history", load.StreamState{}, time.Time{}, at(10), 0,
			[]extract.Window{{To: at(10)}}, time.Time{}, at(10)},
		{"from the cursor less the lookback", load.StreamState{Coverage: load.Coverage{{To: at(5)}}}, time.Time{}, at(10), 2 * time.Hour,
			[]extract.Window{{From: at(3), To: at(10)}}, at(3), at(10)},
		{"--since instead of the cursor", load.StreamState{Coverage: load.Coverage{{To: at(5)}}}, at(7), at(10), 2 * time.Hour,
			[]extract.Window{{From: at(7), To: at(10)}}, at(7), at(10)},
		{"nothing after --since", load.StreamState{}, at(10), at(10), 0,
			nil, at(10), at(10)},
		{"resumed: the pending windows and what came since", interrupted, time.Time{}, at(6), time.Hour,
			[]extract.Window{{From: at(1), To: at(2)}, {From: at(3), To: at(6)}}, at(1), at(6)},
		{"resumed with an earlier --until: the pending windows still end the range", interrupted, time.Time{}, at(3), 0,
			pending, at(1), at(4)},
		{"resumed with --since", interrupted, at(5), at(6), 0,
			[]extract.Window{{From: at(1), To: at(2)}, {From: at(3), To: at(4)}, {From: at(5), To: at(6)}}, at(5), at(6)},
		{"after a backfill before the history: from its end, not the backfill's",
			load.StreamState{Start: at(5), Coverage: load.Coverage{{From: at(1), To: at(2)}, {From: at(5), To: at(8)}}}, time.Time{}, at(10), time.Hour,
			[]extract.Window{{From: at(7), To: at(10)}}, at(7), at(10)},
		{"after a later --since skipped a gap in the history: from the gap",
			load.StreamState{Coverage: load.Coverage{{To: at(3)}, {From: at(5), To: at(8)}}}, time.Time{}, at(10), time.Hour,
			[]extract.Window{{From: at(2), To: at(10)}}, at(2), at(10)},
		{"a history begun with --since, none of it synced yet: from its start",
			load.StreamState{Start: at(5), Coverage: load.Coverage{{From: at(1), To: at(2)}}}, time.Time{}, at(10), time.Hour,
			[]extract.Window{{From: at(5), To: at(10)}}, at(5), at(10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, since, until := pipeline.PlanRun(tc.st, tc.since, tc.until, tc.lookback)
			if !slices.Equal(got, tc.want) || !since.Equal(tc.wantSince) || !until.Equal(tc.wantUntil) {
				t.Errorf("windows %v, range [%s, %s); want %v, [%s, %s)", got, since, until, tc.want, tc.wantSince, tc.wantUntil)
			}
		})
	}
}

// TestStreamIdentity checks which syncs share a stream (and so a cursor):
// the same base URL, filters and fields, however the flags spelled them.
func TestStreamIdentity(t *testing.T) {
	const base = "https://api.example.com/v1"
	q := extract.Query{Tags: []string{"vip", "lead"}, Fields: []string{"id", "created_at", "city"}}
	for _, tc := range []struct {
		name string
		url  string
		q    extract.Query
		same bool
	}{
		{"tags in another order", base, extract.Query{Tags: []string{"lead", "vip"}, Fields: q.Fields}, true},
		{"a tag given twice", base, extract.Query{Tags: []string{"vip", "lead", "vip"}, Fields: q.Fields}, true},
		{"fields in another order", base, extract.Query{Tags: q.Tags, Fields: []string{"city", "id", "created_at"}}, true},
		{"a trailing slash", base + "/", q, true},
		{"another limit", base, extract.Query{Limit: 10, Tags: q.Tags, Fields: q.Fields}, true},
		{"one tag fewer", base, extract.Query{Tags: []string{"vip"}, Fields: q.Fields}, false},
		{"a list", base, extract.Query{ListID: "lst_1", Tags: q.Tags, Fields: q.Fields}, false},
		{"other fields", base, extract.Query{Tags: q.Tags, Fields: []string{"id", "created_at"}}, false},
		{"another base URL", "https://eu.example.com/v1", q, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id1, ident1 := pipeline.StreamIdentity(base, q)
			id2, ident2 := pipeline.StreamIdentity(tc.url, tc.q)
			if (id1 == id2) != tc.same || (ident1 == ident2) != tc.same {
				t.Errorf("same stream %v, want %v:\n %s %s\n %s %s", id1 == id2, tc.same, id1, ident1, id2, ident2)
			}
		})
	}
}
