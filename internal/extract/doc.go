// Package extract owns everything that touches the LeadLex export API: the HTTP
// client for GET /v1/contacts/export (auth, typed errors, retries, rate-limit
// budget), and the window planner that decides which created_at windows to ask
// for so that every row is fetched at least once with as few calls as possible.
//
// It hands each response body on as an io.Reader and never parses rows into
// values itself beyond what the planner needs (a row count and the created_at
// instants, reported back in a Tally); turning rows into Arrow batches belongs
// to package transform, and storing them to package load.
package extract
