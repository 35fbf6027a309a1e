package fakeapi

import (
	"encoding/csv"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// BenchmarkServe1M streams all 1,000,000 contacts of a dataset through a
// loopback server, as 25 windows of about 40,000 rows (the API caps a
// response at 50,000), and reports rows/s and MB/s. The raw case reads the
// bodies as bytes; the csv case also parses them with encoding/csv.
func BenchmarkServe1M(b *testing.B) {
	const n, windows = 1_000_000, 25
	srv, ts := newTestServer(b, Config{Contacts: n, Seed: 1, Bounds: BoundsMixed})
	d := srv.Dataset()
	bounds := []time.Time{time.Unix(spanStart, 0).UTC()}
	for k := 1; k < windows; k++ {
		bounds = append(bounds, d.CreatedAt(k*n/windows))
	}
	bounds = append(bounds, time.Unix(spanEnd, 0).UTC())
	urls := make([]string, windows)
	for k := range urls {
		q := url.Values{
			"limit":          {"50000"},
			"created_after":  {bounds[k].Format(time.RFC3339)},
			"created_before": {bounds[k+1].Format(time.RFC3339)},
		}
		urls[k] = ts.URL + ExportPath + "?" + q.Encode()
	}
	fetch := func(b *testing.B, u string, parse bool) (bytes, rows int64) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Authorization", "Bearer "+DemoKey)
		resp, err := ts.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		cr := &countingReader{r: resp.Body}
		if parse {
			r := csv.NewReader(cr)
			r.ReuseRecord = true
			for {
				if _, err := r.Read(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
				rows++
			}
			rows-- // the header
		} else if _, err := io.Copy(io.Discard, cr); err != nil {
			b.Fatal(err)
		}
		return cr.n, rows
	}
	for _, bc := range []struct {
		name  string
		parse bool
	}{{"raw", false}, {"csv", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var total, rows int64
			for _, u := range urls {
				nb, nr := fetch(b, u, true)
				total, rows = total+nb, rows+nr
			}
			if rows != n {
				b.Fatalf("the windows hold %d rows, want %d", rows, n)
			}
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				for _, u := range urls {
					fetch(b, u, bc.parse)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkNew1M measures building a dataset of a million contacts.
func BenchmarkNew1M(b *testing.B) {
	for b.Loop() {
		if _, err := New(Config{Contacts: 1_000_000}); err != nil {
			b.Fatal(err)
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
