package extract

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

const redactKey = "wbk_live_S3CR3T_0123456789abcdef" // 32 bytes: prefixes of 16 and more are redacted

// chunkReader hands out its input n bytes a Read.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}

func TestRedact(t *testing.T) {
	key := redactKey
	long := strings.Repeat("x", redactChunk-5)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no key", "id,full_name\n1,Jane\n", "id,full_name\n1,Jane\n"},
		{"the key", key, "[REDACTED]"},
		{"in a header echo", "Authorization: Bearer " + key + "\n", "Authorization: Bearer [REDACTED]\n"},
		{"twice, adjacent", "a" + key + key + "b" + key, "a[REDACTED][REDACTED]b[REDACTED]"},
		{"followed by more", key + "XYZ", "[REDACTED]XYZ"},
		{"clipped mid-text", "Bearer " + key[:20] + "...", "Bearer [REDACTED]..."},
		{"clipped at the end", "Bearer " + key[:16], "Bearer [REDACTED]"},
		{"short prefix kept", "Bearer " + key[:15] + "...", "Bearer " + key[:15] + "..."},
		{"overlapping start", "wbk_live_" + key, "wbk_live_[REDACTED]"},
		{"prefix then key", key[:20] + key, "[REDACTED][REDACTED]"},
		{"across the chunk size", long + key + long, long + "[REDACTED]" + long},
		{"lone prefix across the chunk size", long + key[:17] + "!" + long, long + "[REDACTED]!" + long},
	}
	red := newRedactor(NewAPIKey(key))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := red.String(tt.in); got != tt.want {
				t.Errorf("String: got %q, want %q", clipForLog(got), clipForLog(tt.want))
			}
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return strings.NewReader(tt.in) },
				"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tt.in)) },
				"data+EOF": func() io.Reader { return iotest.DataErrReader(strings.NewReader(tt.in)) },
			}
			for n := 2; n <= len(key)+2; n += 3 {
				readers["chunks of "+strconv.Itoa(n)] = func() io.Reader { return &chunkReader{b: []byte(tt.in), n: n} }
			}
			for name, src := range readers {
				got, err := io.ReadAll(newRedactReader(src(), red))
				if err != nil || string(got) != tt.want {
					t.Errorf("%s: got %q, %v; want %q", name, clipForLog(string(got)), err, clipForLog(tt.want))
				}
			}
		})
	}
	// A read error comes after everything read before it.
	boom := errors.New("boom")
	got, err := io.ReadAll(newRedactReader(io.MultiReader(strings.NewReader("ab"+key[:20]), iotest.ErrReader(boom)), red))
	if !errors.Is(err, boom) || string(got) != "ab[REDACTED]" {
		t.Errorf("got %q, %v; want the redacted text, then boom", got, err)
	}
	// No key, nothing redacted.
	if newRedactor(APIKey{}).String(key) != key || newRedactReader(strings.NewReader("x"), nil) == nil {
		t.Error("an empty key redacts")
	}
}

func clipForLog(s string) string {
	if len(s) > 80 {
		return s[:40] + "..." + s[len(s)-40:]
	}
	return s
}

// FuzzRedactReader checks that however the input is split into reads, the
// stream says what String says of the whole, and that no prefix of the key
// long enough to be redacted is left in it.
func FuzzRedactReader(f *testing.F) {
	f.Add([]byte("Bearer "+redactKey+"\n"), uint8(3))
	f.Add([]byte(redactKey[:20]+redactKey+"wbk_live_"), uint8(1))
	f.Add([]byte("nothing to see"), uint8(7))
	red := newRedactor(NewAPIKey(redactKey))
	f.Fuzz(func(t *testing.T, in []byte, n uint8) {
		want := red.String(string(in))
		got, err := io.ReadAll(newRedactReader(&chunkReader{b: in, n: int(n%40) + 1}, red))
		if err != nil || string(got) != want {
			t.Fatalf("chunks of %d: got %q, want %q", n%40+1, got, want)
		}
		if bytes.Contains(got, []byte(redactKey[:red.min])) {
			t.Fatalf("output %q holds the key", got)
		}
	})
}

func TestCleanText(t *testing.T) {
	red := newRedactor(NewAPIKey(redactKey))
	for _, tt := range []struct{ in, want string }{
		{"plain", "plain"},
		{"two\nlines\r\n", "two lines"},
		{"\x1b[31mred\x1b[0m", "[31mred [0m"},
		{"key " + redactKey, "key [REDACTED]"},
		{strings.Repeat("é", 200), strings.Repeat("é", 150) + "..."},
		{"bad \xff utf8", "bad   utf8"},
	} {
		if got := red.cleanText(tt.in, maxText); got != tt.want {
			t.Errorf("cleanText(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"req_0123456789abcdef", true},
		{"a.b:c/d+e=f-g", true},
		{strings.Repeat("r", 128), true},
		{strings.Repeat("r", 129), false},
		{"", false},
		{"req 1", false},
		{"req\t1", false},
		{"réq", false},
		{"req;1", false},
		{"[REDACTED]", false},
	} {
		if got := validRequestID(tt.id); got != tt.ok {
			t.Errorf("validRequestID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
	if m := requestIDMarker("x"); !validRequestID(m) || !strings.HasPrefix(m, "invalid-request-id-") || m == requestIDMarker("y") {
		t.Errorf("marker %q", m)
	}
}
