//go:build duckdb_arrow

package load

// CloseIdle closes d's file as its idle timer does when the sink has left
// it alone (between windows, during a wait for the rate limit), so that a
// test can change the file at that moment without waiting for the timer.
func (d *DuckDB) CloseIdle() {
	d.mu.Lock()
	gen := d.gen
	d.mu.Unlock()
	d.closeIdle(gen)
}
