package transform

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

// get sends one export request to the fake API and returns the response.
func get(t *testing.T, ts *httptest.Server, query string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.URL+fakeapi.ExportPath+"?"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fakeapi.DemoKey)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	return resp
}

// TestFakeAPIExport reads whole exports of the fake API and checks every row
// against the dataset the server generated them from.
func TestFakeAPIExport(t *testing.T) {
	tests := []struct {
		name   string
		format fakeapi.TimeFormat
		query  string
	}{
		{"default fields, UTC", fakeapi.TimeUTC, "limit=50000"},
		{"default fields, offsets", fakeapi.TimeOffset, "limit=50000"},
		{"extra fields", fakeapi.TimeUTC, "limit=50000&fields=notes,id,city,tags,created_at,lead_score,list_ids,full_name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := fakeapi.New(fakeapi.Config{Contacts: 3000, Seed: 11, TimeFormat: tt.format, Order: fakeapi.OrderRandom})
			if err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			resp := get(t, ts, tt.query)

			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			rd, err := NewReader(resp.Body, Options{Alloc: alloc, BatchRows: 1000, RequestID: resp.Header.Get("X-Request-ID")})
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Release()
			ds := srv.Dataset()
			seen := 0
			var times []int64
			for rd.Next() {
				rec := rd.RecordBatch()
				cols := map[string]int{}
				for i, f := range rec.Schema().Fields() {
					cols[f.Name] = i
				}
				str := func(name string, row int) (string, bool) {
					k, ok := cols[name]
					if !ok {
						return "", false
					}
					a := rec.Column(k).(*array.String)
					if a.IsNull(row) {
						return "", true
					}
					return a.Value(row), true
				}
				for row := range int(rec.NumRows()) {
					id, _ := str("id", row)
					i, ok := ds.Index(id)
					if !ok {
						t.Fatalf("row %d: id %q is not in the dataset", seen, id)
					}
					c := ds.Contact(i)
					for _, name := range []string{"full_name", "email", "phone", "job_title", "company_name", "linkedin_url", "notes", "city", "lead_score", "list_ids"} {
						got, present := str(name, row)
						if !present {
							continue
						}
						want, _ := c.Field(name)
						if got != want {
							t.Fatalf("contact %d %s = %q, want %q", i, name, got, want)
						}
					}
					tags := rec.Column(cols["tags"]).(*array.List)
					lo, hi := tags.ValueOffsets(row)
					var gotTags []string
					for k := lo; k < hi; k++ {
						gotTags = append(gotTags, tags.ListValues().(*array.String).Value(int(k)))
					}
					if !slices.Equal(gotTags, c.Tags) {
						t.Fatalf("contact %d tags %q, want %q", i, gotTags, c.Tags)
					}
					at := rec.Column(cols["created_at"]).(*array.Timestamp).Value(row)
					if !time.UnixMicro(int64(at)).Equal(c.CreatedAt) {
						t.Fatalf("contact %d created_at %v, want %v", i, time.UnixMicro(int64(at)).UTC(), c.CreatedAt)
					}
					times = append(times, int64(at))
					seen++
				}
			}
			if err := rd.Err(); err != nil {
				t.Fatal(err)
			}
			if seen != 3000 || len(rd.Rejects()) != 0 || rd.Rows() != 3000 {
				t.Fatalf("%d rows in batches, %d rejects, Rows() %d; want 3000, 0, 3000", seen, len(rd.Rejects()), rd.Rows())
			}
			if tl := rd.Tally(); tl.Rows != 3000 || !slices.Equal(tl.Times, times) {
				t.Errorf("Tally has %d rows and %d times, want 3000 and the batches' created_at", tl.Rows, len(tl.Times))
			}
		})
	}
}

// TestFakeAPICutBody reads a body the server breaks off mid-row: the
// transport's error ends the stream unchanged.
func TestFakeAPICutBody(t *testing.T) {
	srv, err := fakeapi.New(fakeapi.Config{Contacts: 5000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	srv.InjectFault(fakeapi.FaultCut)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	resp := get(t, ts, "limit=50000")
	res, err := readAll(t, resp.Body, Options{BatchRows: 500})
	if err != nil {
		t.Fatal(err)
	}
	if res.err == nil || errors.Is(res.err, ErrTooManyRejects) {
		t.Fatalf("Err = %v, want the transport's error", res.err)
	}
	if !errors.Is(res.err, io.ErrUnexpectedEOF) {
		t.Logf("transport error (not io.ErrUnexpectedEOF): %v", res.err)
	}
	if len(res.rejects) != 0 || len(res.rows) >= 5000 {
		t.Errorf("%d rows, %d rejects from a cut body", len(res.rows), len(res.rejects))
	}
}
