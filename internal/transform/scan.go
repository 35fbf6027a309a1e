package transform

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"unicode/utf8"
)

// Buffer sizes of the scanner. A record longer than maxRecordBytes is
// skipped without being held (its first maxRawBytes are kept as its Raw), so
// memory stays bounded whatever the body holds.
const (
	initialBufferBytes = 64 << 10
	maxRecordBytes     = 8 << 20
	maxRawBytes        = 64 << 10
)

// errBadRead is returned when the underlying reader reports an impossible
// count.
var errBadRead = errors.New("transform: reader returned an invalid count")

// span locates one field of the current record: bytes [lo, hi) of the record
// itself, or of the scratch buffer when the field had to be unescaped.
type span struct {
	lo, hi  int
	scratch bool
}

// scanner splits a CSV body into records following encoding/csv's rules
// (RFC 4180; "\r\n" read as "\n"; empty lines skipped; after a syntax error
// the rest of the physical line is dropped and the next record starts on the
// next line), but without allocating per record: a record's fields are
// slices of the scanner's buffer, valid until the next call of next.
type scanner struct {
	rd        io.Reader
	buf       []byte
	pos, end  int   // unread bytes are buf[pos:end]
	rerr      error // the error the last Read returned, io.EOF at the end
	zeroReads int
	line      int64 // line number of buf[pos]
	maxRecord int

	// The current record.
	recLine int64    // line it starts on
	raw     []byte   // its text without the final line ending (truncated if too long)
	fields  [][]byte // its fields; not meaningful when bad != nil
	bad     error    // csv.ErrQuote, csv.ErrBareQuote, ErrRecordTooLong, or nil
	// cut says the record ends the body without its line ending, or inside
	// a quoted field (open): where a body cut mid-row ends.
	cut, open bool

	spans   []span
	scratch []byte
	long    []byte
}

func newScanner(rd io.Reader, bufSize, maxRecord int) *scanner {
	return &scanner{rd: rd, buf: make([]byte, min(bufSize, maxRecord)), line: 1, maxRecord: maxRecord}
}

// err is the read error that ended the body, nil at a clean end.
func (s *scanner) err() error {
	if s.rerr == io.EOF {
		return nil
	}
	return s.rerr
}

// skipBOM drops a UTF-8 byte order mark at the start of the body.
func (s *scanner) skipBOM() {
	for s.end-s.pos < 3 && s.rerr == nil {
		if !s.fill() {
			break
		}
	}
	if bytes.HasPrefix(s.buf[s.pos:s.end], []byte("\xef\xbb\xbf")) {
		s.pos += 3
	}
}

// next advances to the next record. It returns false at the end of the body
// and on a read error, which err then reports.
func (s *scanner) next() bool {
	for {
		b := s.buf[s.pos:s.end]
		atEOF := s.rerr == io.EOF
		if len(b) == 0 {
			if s.rerr != nil {
				return false
			}
		} else {
			// Empty lines are skipped, as encoding/csv does.
			switch {
			case b[0] == '\n':
				s.pos++
				s.line++
				continue
			case b[0] == '\r' && len(b) > 1 && b[1] == '\n':
				s.pos += 2
				s.line++
				continue
			case b[0] == '\r' && len(b) == 1 && atEOF:
				s.pos++
				continue
			}
			if n, more := s.parse(b, atEOF); !more {
				s.take(n)
				return true
			}
			if s.rerr != nil {
				return false // a read error; at EOF parse never asks for more
			}
		}
		if !s.fill() {
			return s.skipLong()
		}
	}
}

// fill moves the unread bytes to the front of the buffer, grows it if they
// fill it, and reads until it is full or the reader fails. It returns false,
// reading nothing, when the unread bytes already fill a buffer of maxRecord
// bytes.
func (s *scanner) fill() bool {
	if s.pos > 0 {
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.pos = 0
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= s.maxRecord {
			return false
		}
		nb := make([]byte, min(2*len(s.buf), s.maxRecord))
		copy(nb, s.buf[:s.end])
		s.buf = nb
	}
	for s.end < len(s.buf) && s.rerr == nil {
		n, err := s.rd.Read(s.buf[s.end:])
		if n < 0 || n > len(s.buf)-s.end {
			n, err = 0, errBadRead
		}
		s.end += n
		switch {
		case err != nil:
			s.rerr = err
		case n > 0:
			s.zeroReads = 0
		default:
			if s.zeroReads++; s.zeroReads >= 100 {
				s.rerr = io.ErrNoProgress
			}
		}
	}
	return true
}

// take makes the first n unread bytes, which parse found to be a record, the
// current record.
func (s *scanner) take(n int) {
	rec := s.buf[s.pos : s.pos+n]
	s.recLine = s.line
	s.line += int64(bytes.Count(rec, newline))
	s.pos += n
	raw := rec
	if len(raw) > 0 && raw[len(raw)-1] == '\n' {
		raw = raw[:len(raw)-1]
	}
	if len(raw) > 0 && raw[len(raw)-1] == '\r' {
		raw = raw[:len(raw)-1]
	}
	s.raw = raw
	s.cut = s.open || len(rec) == 0 || rec[len(rec)-1] != '\n'
	s.fields = s.fields[:0]
	if s.bad != nil {
		return
	}
	for _, sp := range s.spans {
		if sp.scratch {
			s.fields = append(s.fields, s.scratch[sp.lo:sp.hi])
		} else {
			s.fields = append(s.fields, rec[sp.lo:sp.hi])
		}
	}
}

var newline = []byte{'\n'}

// parse splits the record at the start of b (which is not an empty line). It
// returns the record's length including its line ending, or more == true when
// b ends before the record does and more input may follow (!atEOF). It sets
// s.spans and s.scratch for a well-formed record, s.bad for one that is not.
func (s *scanner) parse(b []byte, atEOF bool) (n int, more bool) {
	s.spans = s.spans[:0]
	s.scratch = s.scratch[:0]
	s.bad, s.open = nil, false
	// nl is the end of the current physical line: its '\n', or len(b) at EOF.
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 {
		if !atEOF {
			return 0, true
		}
		nl = len(b)
	}
	q := quoteIn(b, 0, nl) // the first quote in b[i:nl], or nl
	i := 0
	for {
		if i < nl && b[i] == '"' {
			// A quoted field, which may run over several lines.
			j := i + 1
			esc := false
			for {
				k := bytes.IndexByte(b[j:], '"')
				if k < 0 {
					if !atEOF {
						return 0, true
					}
					s.bad, s.open = csv.ErrQuote, true
					return len(b), false
				}
				j += k
				if j+1 < len(b) && b[j+1] == '"' {
					esc = true
					j += 2
					continue
				}
				break
			}
			s.addQuoted(b, i+1, j, esc)
			a := j + 1 // after the closing quote
			if a == len(b) {
				if !atEOF {
					return 0, true
				}
				return a, false
			}
			switch b[a] {
			case ',':
				i = a + 1
				if a > nl {
					k := bytes.IndexByte(b[a:], '\n')
					if k < 0 {
						if !atEOF {
							return 0, true
						}
						nl = len(b)
					} else {
						nl = a + k
					}
				}
				q = quoteIn(b, i, nl)
				continue
			case '\n':
				return a + 1, false
			case '\r':
				if a+1 == len(b) {
					if !atEOF {
						return 0, true
					}
					return a + 1, false // encoding/csv drops a final \r before EOF
				}
				if b[a+1] == '\n' {
					return a + 2, false
				}
			}
			return s.badLine(b, a, csv.ErrQuote, atEOF)
		}
		// An unquoted field ends at the next comma or at the end of the line
		// and holds no quote.
		fe, last := nl, true
		if k := bytes.IndexByte(b[i:nl], ','); k >= 0 {
			fe, last = i+k, false
		}
		if q < fe {
			return s.badLine(b, q, csv.ErrBareQuote, atEOF)
		}
		if !last {
			s.spans = append(s.spans, span{lo: i, hi: fe})
			i = fe + 1
			continue
		}
		hi := fe
		if hi > i && b[hi-1] == '\r' {
			hi-- // "\r\n" ends the line; at EOF a final \r is dropped
		}
		s.spans = append(s.spans, span{lo: i, hi: hi})
		if nl < len(b) {
			return nl + 1, false
		}
		return nl, false
	}
}

// quoteIn is the index of the first quote in b[i:end], or end.
func quoteIn(b []byte, i, end int) int {
	if k := bytes.IndexByte(b[i:end], '"'); k >= 0 {
		return i + k
	}
	return end
}

// badLine ends a record that has a syntax error at b[at]: the record runs to
// the end of that physical line.
func (s *scanner) badLine(b []byte, at int, err error, atEOF bool) (int, bool) {
	k := bytes.IndexByte(b[at:], '\n')
	if k < 0 {
		if !atEOF {
			return 0, true
		}
		s.bad = err
		return len(b), false
	}
	s.bad = err
	return at + k + 1, false
}

// addQuoted adds the quoted field b[lo:hi] (between its quotes), unescaping
// "" and reading "\r\n" as "\n" when it holds either.
func (s *scanner) addQuoted(b []byte, lo, hi int, esc bool) {
	c := b[lo:hi]
	if !esc && bytes.IndexByte(c, '\r') < 0 {
		s.spans = append(s.spans, span{lo: lo, hi: hi})
		return
	}
	start := len(s.scratch)
	for k := 0; k < len(c); k++ {
		ch := c[k]
		switch {
		case ch == '"':
			k++ // the first of "" stands for one quote
		case ch == '\r' && k+1 < len(c) && c[k+1] == '\n':
			continue
		}
		s.scratch = append(s.scratch, ch)
	}
	s.spans = append(s.spans, span{lo: start, hi: len(s.scratch), scratch: true})
}

// skipLong consumes a record that does not fit in maxRecord bytes, keeping
// its first maxRawBytes as its raw text and running only the record-boundary
// automaton over the rest. It returns false on a read error.
func (s *scanner) skipLong() bool {
	s.recLine = s.line
	s.long = append(s.long[:0], truncate(s.buf[s.pos:s.end], maxRawBytes)...)
	s.raw = s.long
	s.fields = s.fields[:0]
	s.bad = ErrRecordTooLong
	st := skField
	for {
		n, st2, done := skip(s.buf[s.pos:s.end], st)
		st = st2
		s.line += int64(bytes.Count(s.buf[s.pos:s.pos+n], newline))
		s.pos += n
		if done || s.rerr == io.EOF {
			s.cut, s.open = !done, !done && st == skQuoted
			return true
		}
		if s.rerr != nil {
			return false
		}
		s.fill()
	}
}

// skipState is a state of the record-boundary automaton.
type skipState uint8

const (
	skField   skipState = iota // at the start of a field
	skPlain                    // in an unquoted field
	skQuoted                   // in a quoted field
	skQuote                    // after a quote in a quoted field
	skQuoteCR                  // after a quote and a \r
	skLine                     // after a syntax error, up to the end of the line
)

// skip runs the record-boundary automaton from state st over b. It returns
// the length of the record's remainder including its final '\n' and true, or
// len(b), the state reached and false when the record goes on past b.
func skip(b []byte, st skipState) (int, skipState, bool) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch st {
		case skField:
			switch c {
			case '"':
				st = skQuoted
			case ',':
			case '\n':
				return i + 1, st, true
			default:
				st = skPlain
			}
		case skPlain:
			switch c {
			case ',':
				st = skField
			case '\n':
				return i + 1, st, true
			case '"':
				st = skLine
			}
		case skQuoted:
			k := bytes.IndexByte(b[i:], '"')
			if k < 0 {
				return len(b), st, false
			}
			i += k
			st = skQuote
		case skQuote:
			switch c {
			case '"':
				st = skQuoted
			case ',':
				st = skField
			case '\n':
				return i + 1, st, true
			case '\r':
				st = skQuoteCR
			default:
				st = skLine
			}
		case skQuoteCR:
			if c == '\n' {
				return i + 1, st, true
			}
			st = skLine
		case skLine:
			k := bytes.IndexByte(b[i:], '\n')
			if k < 0 {
				return len(b), st, false
			}
			return i + k + 1, st, true
		}
	}
	return len(b), st, false
}

// truncate returns at most max bytes of b, not cutting a UTF-8 sequence.
func truncate(b []byte, max int) []byte {
	if len(b) <= max {
		return b
	}
	cut := max
	for k := 0; k < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(b[cut]); k++ {
		cut--
	}
	return b[:cut]
}
