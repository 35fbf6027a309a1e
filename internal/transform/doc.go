// Package transform owns the step from one LeadLex export body to Arrow: it
// reads the CSV (RFC 4180, CRLF or LF, UTF-8) from any io.Reader, types the
// columns the header names with the schemas package, streams them as
// arrow.RecordBatch values of a fixed row count with bounded memory, sets
// aside the rows that do not parse as rejects, and fills the planner's
// extract.Tally on the way so that the body is read once.
//
// It must not touch the network, the database, files or the stream state: it
// neither fetches nor retries a body (a read error is handed back unchanged
// for the extractor to judge) and it never decides what a sink keeps.
package transform
