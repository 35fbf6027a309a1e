package transform

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/leadlex/leadlex-etl/internal/fakeapi"
)

const benchRows = 200_000

// benchBody is a realistic export body of benchRows contacts of the fake
// API's dataset, written as the server writes it (encoding/csv, CRLF).
var benchBody = sync.OnceValues(func() ([]byte, error) {
	srv, err := fakeapi.New(fakeapi.Config{Contacts: benchRows, Seed: 42})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	if err := w.Write(fakeapi.DefaultFields); err != nil {
		return nil, err
	}
	ds := srv.Dataset()
	rec := make([]string, len(fakeapi.DefaultFields))
	for i := range ds.Len() {
		c := ds.Contact(i)
		for k, name := range fakeapi.DefaultFields {
			rec[k], _ = c.Field(name)
		}
		if err := w.Write(rec); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
})

// BenchmarkReader reads a 200,000-row body into record batches, reporting
// rows/s beside MB/s and allocations. The encoding_csv case is a reference:
// encoding/csv only splitting the same body into fields.
func BenchmarkReader(b *testing.B) {
	body, err := benchBody()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("transform", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var rows int64
		for b.Loop() {
			rd, err := NewReader(bytes.NewReader(body), Options{})
			if err != nil {
				b.Fatal(err)
			}
			for rd.Next() {
			}
			if err := rd.Err(); err != nil {
				b.Fatal(err)
			}
			if rd.Rows() != benchRows || len(rd.Rejects()) != 0 {
				b.Fatalf("%d rows, %d rejects", rd.Rows(), len(rd.Rejects()))
			}
			rows += rd.Rows()
			rd.Release()
		}
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("encoding_csv", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		var rows int64
		for b.Loop() {
			cr := csv.NewReader(bytes.NewReader(body))
			cr.ReuseRecord = true
			for {
				_, err := cr.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				rows++
			}
		}
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	})
}
