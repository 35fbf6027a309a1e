package extract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"unicode"
)

// Redacted replaces the API key wherever text from the server repeats it.
const Redacted = "[REDACTED]"

// redactor finds the API key in text that came from the server: the whole
// key, and any prefix of it at least min bytes long, so that a server that
// clips an echoed header (a message cut at 200 bytes) does not leak most of
// the key either.
type redactor struct {
	key []byte
	min int
}

// newRedactor returns a redactor of k, or nil for an empty key (which
// redacts nothing). Keys shorter than 16 bytes are matched whole; longer
// ones from their first max(16, len/2) bytes on.
func newRedactor(k APIKey) *redactor {
	if k.v == "" {
		return nil
	}
	n := len(k.v)
	return &redactor{key: []byte(k.v), min: min(n, max(16, n/2))}
}

// scan appends data to dst with every match replaced by Redacted and
// returns how many bytes of data it consumed. Unless final, it holds back
// the end of data that may be the start of a match continuing in the next
// chunk: less than len(key) bytes.
func (r *redactor) scan(dst, data []byte, final bool) ([]byte, int) {
	head := r.key[:r.min]
	i := 0
	for {
		j := bytes.Index(data[i:], head)
		if j < 0 {
			break
		}
		j += i
		n := r.min
		for n < len(r.key) && j+n < len(data) && data[j+n] == r.key[n] {
			n++
		}
		dst = append(dst, data[i:j]...)
		if n < len(r.key) && j+n == len(data) && !final {
			return dst, j // the match may go on in the next chunk
		}
		dst = append(dst, Redacted...)
		i = j + n
	}
	hold := 0
	if !final {
		// A match starting in the last min-1 bytes is not found yet.
		hold = min(r.min-1, len(data)-i)
	}
	dst = append(dst, data[i:len(data)-hold]...)
	return dst, len(data) - hold
}

// String returns s with the key redacted. A nil redactor returns s.
func (r *redactor) String(s string) string {
	if r == nil || !strings.Contains(s, string(r.key[:r.min])) {
		return s
	}
	out, _ := r.scan(nil, []byte(s), true)
	return string(out)
}

// redactReader streams r with the key redacted, however the key is split
// across reads.
type redactReader struct {
	r   io.Reader
	red *redactor
	in  []byte // bytes read from r and held back, then room for the next read
	out []byte // redacted bytes not yet returned
	off int
	err error // r's error, returned once everything before it is
}

const redactChunk = 64 << 10

func newRedactReader(r io.Reader, red *redactor) io.Reader {
	if red == nil {
		return r
	}
	return &redactReader{r: r, red: red, in: make([]byte, 0, redactChunk+len(red.key))}
}

func (rr *redactReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for rr.off == len(rr.out) {
		if rr.err != nil {
			return 0, rr.err
		}
		n, err := rr.r.Read(rr.in[len(rr.in):cap(rr.in)])
		rr.in = rr.in[:len(rr.in)+n]
		var used int
		rr.out, used = rr.red.scan(rr.out[:0], rr.in, err != nil)
		rr.off = 0
		rr.in = rr.in[:copy(rr.in, rr.in[used:])]
		rr.err = err
	}
	n := copy(p, rr.out[rr.off:])
	rr.off += n
	return n, nil
}

// maxText bounds a message or code taken from the server.
const maxText = 300

// cleanText makes text from the server fit for a log line, an error message
// and a terminal: the key redacted, control characters (newlines, escape
// sequences) replaced by spaces, and clipped to limit bytes.
func (r *redactor) cleanText(s string, limit int) string {
	s = r.String(s)
	s = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return ' '
		}
		return c
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// maxRequestID is the longest X-Request-ID kept as it is.
const maxRequestID = 128

// validRequestID reports whether s is a short token: 1 to 128 bytes of
// [A-Za-z0-9._:/+=-].
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("._:/+=-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// requestIDMarker stands for an X-Request-ID that is not kept: a fixed
// prefix and a short hash of the redacted value, so that calls stay
// distinguishable without storing anything the server chose.
func requestIDMarker(redacted string) string {
	sum := sha256.Sum256([]byte(redacted))
	return "invalid-request-id-" + hex.EncodeToString(sum[:4])
}
