package pipeline_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/internal/fakeapi"
	"github.com/leadlex/leadlex-etl/internal/load"
	"github.com/leadlex/leadlex-etl/internal/pipeline"
)

// progressLog records what a run told its Progress.
type progressLog struct {
	starts    []int
	windows   []pipeline.WindowProgress
	refreshes []int
	order     []string
}

func (p *progressLog) Start(n int) {
	p.starts = append(p.starts, n)
	p.order = append(p.order, "start")
}
func (p *progressLog) Window(w pipeline.WindowProgress) {
	p.windows = append(p.windows, w)
	p.order = append(p.order, "window")
}
func (p *progressLog) Refresh(_ extract.Window, n int) {
	p.refreshes = append(p.refreshes, n)
	p.order = append(p.order, "refresh")
}

// TestProgressIsTold checks the Progress hook against the run's Result: one
// Start before the first window, a Window per committed window counting up
// to the run's windows, rows and calls, and a Refresh before the refresh's
// windows.
func TestProgressIsTold(t *testing.T) {
	_, url := startFake(t, fakeapi.Config{Contacts: 4000, Seed: 41, Order: fakeapi.OrderRandom})
	db := openDB(t, filepath.Join(t.TempDir(), "w.duckdb"))
	client := &extract.Client{BaseURL: url, Key: extract.NewAPIKey(testKey), Retry: extract.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}}
	for _, tc := range []struct {
		name    string
		refresh int
	}{{"new data", 0}, {"refresh", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			p := &progressLog{}
			res, err := pipeline.Sync(context.Background(), pipeline.Options{
				Client: client, Query: extract.Query{Limit: 500}, Targets: []load.Target{db}, Progress: p,
				Refresh: pipeline.RefreshPolicy{Calls: tc.refresh},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.starts) != 1 || p.order[0] != "start" || p.starts[0] < 1 {
				t.Fatalf("Start calls %v (events %v), want one, first", p.starts, p.order)
			}
			if len(p.windows) != res.Windows || res.Windows == 0 {
				t.Fatalf("%d Window calls for %d windows", len(p.windows), res.Windows)
			}
			for i, w := range p.windows {
				if w.Windows != i+1 || (i > 0 && (w.Rows < p.windows[i-1].Rows || w.Calls < p.windows[i-1].Calls)) {
					t.Errorf("Window call %d: %+v does not count up", i, w)
				}
			}
			last := p.windows[len(p.windows)-1]
			if last.Rows != int64(res.Rows) || last.Calls != res.Calls || last.Pending != 0 {
				t.Errorf("last Window %+v; the run received %d rows with %d calls", last, res.Rows, res.Calls)
			}
			refreshed := 0
			for _, w := range p.windows {
				if w.Refresh {
					refreshed++
				}
			}
			if tc.refresh == 0 && (len(p.refreshes) != 0 || refreshed != 0) {
				t.Errorf("refresh off, yet %d Refresh calls and %d refresh windows", len(p.refreshes), refreshed)
			}
			if tc.refresh > 0 {
				i := slices.Index(p.order, "refresh")
				if len(p.refreshes) == 0 || refreshed == 0 || i < 0 || !p.windows[i-1].Refresh {
					t.Errorf("refresh of %d calls: Refresh calls %v, %d refresh windows, events %v", tc.refresh, p.refreshes, refreshed, p.order)
				}
			}
		})
	}
}
