package transform

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/leadlex/leadlex-etl/internal/extract"
	"github.com/leadlex/leadlex-etl/schemas"
)

const (
	hdr = "id,full_name,tags,created_at\n"
	u1  = "123e4567-e89b-12d3-a456-426614174000"
	u2  = "456e7890-a1b2-34c5-d678-901234567890"
	ts1 = "2026-04-15T09:00:00Z"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{
			name: "LF",
			body: hdr + u1 + `,Jane Doe,"lead,priority",` + ts1 + "\n" + u2 + ",Bob Smith,prospect,2026-04-16T14:30:00Z\n",
			want: []string{
				u1 + "|Jane Doe|[lead;priority]|2026-04-15T09:00:00Z|@2",
				u2 + "|Bob Smith|[prospect]|2026-04-16T14:30:00Z|@3",
			},
		},
		{
			name: "CRLF",
			body: strings.ReplaceAll(hdr, "\n", "\r\n") + u1 + `,Jane Doe,"lead,priority",` + ts1 + "\r\n" + u2 + ",Bob Smith,prospect,2026-04-16T14:30:00Z\r\n",
			want: []string{
				u1 + "|Jane Doe|[lead;priority]|2026-04-15T09:00:00Z|@2",
				u2 + "|Bob Smith|[prospect]|2026-04-16T14:30:00Z|@3",
			},
		},
		{
			name: "quoted commas and quotes",
			body: hdr + u1 + `,"Doe, Jane ""JD""",,` + ts1 + "\n" + u2 + `,"""",,"` + ts1 + "\"\n",
			want: []string{
				u1 + `|"Doe, Jane \"JD\""|[]|2026-04-15T09:00:00Z|@2`,
				u2 + `|"\""|[]|2026-04-15T09:00:00Z|@3`,
			},
		},
		{
			name: "embedded newlines LF",
			body: hdr + u1 + ",\"first\nsecond\n\nfourth\",,\"" + ts1 + "\"\n" + u2 + ",Bob,,2026-04-16T14:30:00Z\n",
			want: []string{
				u1 + `|"first\nsecond\n\nfourth"|[]|2026-04-15T09:00:00Z|@2`,
				u2 + "|Bob|[]|2026-04-16T14:30:00Z|@6",
			},
		},
		{
			name: "embedded newlines CRLF read as LF",
			body: "id,full_name,tags,created_at\r\n" + u1 + ",\"first\r\nsecond\r\",\"a,\r\nb\"," + ts1 + "\r\n" + u2 + ",Bob,,2026-04-16T14:30:00Z\r\n",
			want: []string{
				u1 + `|"first\nsecond\r"|[a;b]|2026-04-15T09:00:00Z|@2`,
				u2 + "|Bob|[]|2026-04-16T14:30:00Z|@5",
			},
		},
		{
			name: "non-ASCII",
			body: hdr + u1 + ",José Müller-Łukasz 山田太郎 🙂,\"café,日本\"," + ts1 + "\n",
			want: []string{u1 + "|José Müller-Łukasz 山田太郎 🙂|[café;日本]|2026-04-15T09:00:00Z|@2"},
		},
		{
			name: "empty optional fields are NULL",
			body: stdHeader() + "\n" + u1 + `,,"",,,,,,` + ts1 + "\n",
			want: []string{u1 + "|∅|∅|∅|∅|∅|∅|[]|2026-04-15T09:00:00Z|@2"},
		},
		{
			name: "tags trimmed, empty items dropped",
			body: hdr +
				u1 + `,a," lead , ,priority,, vip ",` + ts1 + "\n" +
				u1 + `,b,",",` + ts1 + "\n" +
				u1 + `,c," ",` + ts1 + "\n" +
				u1 + `,d,"	x	,y z",` + ts1 + "\n",
			want: []string{
				u1 + "|a|[lead;priority;vip]|2026-04-15T09:00:00Z|@2",
				u1 + "|b|[]|2026-04-15T09:00:00Z|@3",
				u1 + "|c|[]|2026-04-15T09:00:00Z|@4",
				u1 + "|d|[x;y z]|2026-04-15T09:00:00Z|@5",
			},
		},
		{
			name: "offsets normalised to UTC",
			body: hdr +
				u1 + ",a,,2026-04-15T11:00:00+02:00\n" +
				u1 + ",b,,2026-04-15T04:00:00-0500\n" +
				u1 + ",c,,2026-04-15T14:00:00+05\n" +
				u1 + ",d,,2026-04-15 09:00:00.123456789Z\n" +
				u1 + ",e,,2026-04-15t09:00:00.5z\n" +
				u1 + ",f,,2026-04-15T09:00Z\n" +
				u1 + ",g,,2026-04-15T11:00:00.000001+02:00\n" +
				u1 + ",h,,2024-02-29T23:30:00-01:00\n" +
				u1 + ",i,,1969-12-31T23:59:59.999999Z\n",
			want: []string{
				u1 + "|a|[]|2026-04-15T09:00:00Z|@2",
				u1 + "|b|[]|2026-04-15T09:00:00Z|@3",
				u1 + "|c|[]|2026-04-15T09:00:00Z|@4",
				u1 + "|d|[]|2026-04-15T09:00:00.123456Z|@5",
				u1 + "|e|[]|2026-04-15T09:00:00.5Z|@6",
				u1 + "|f|[]|2026-04-15T09:00:00Z|@7",
				u1 + "|g|[]|2026-04-15T09:00:00.000001Z|@8",
				u1 + "|h|[]|2024-03-01T00:30:00Z|@9",
				u1 + "|i|[]|1969-12-31T23:59:59.999999Z|@10",
			},
		},
		{
			name: "uppercase UUID canonicalised",
			body: hdr + strings.ToUpper(u1) + ",a,," + ts1 + "\n" + "123E4567-e89B-12d3-A456-426614174000,b,," + ts1 + "\n",
			want: []string{
				u1 + "|a|[]|2026-04-15T09:00:00Z|@2",
				u1 + "|b|[]|2026-04-15T09:00:00Z|@3",
			},
		},
		{
			name: "BOM, blank lines, no final newline",
			body: "\ufeff" + hdr + "\n\r\n" + u1 + ",a,," + ts1 + "\n\n" + u2 + ",b,," + ts1,
			want: []string{
				u1 + "|a|[]|2026-04-15T09:00:00Z|@4",
				u2 + "|b|[]|2026-04-15T09:00:00Z|@6",
			},
		},
		{
			name: "final CR before EOF dropped",
			body: hdr + u1 + ",a,," + ts1 + "\r",
			want: []string{u1 + "|a|[]|2026-04-15T09:00:00Z|@2"},
		},
		{
			name: "header only",
			body: hdr,
		},
		{
			name: "header without newline",
			body: strings.TrimSuffix(hdr, "\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readAll(t, strings.NewReader(tt.body), Options{})
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			if res.err != nil {
				t.Fatalf("Err: %v", res.err)
			}
			if len(res.rejects) > 0 {
				t.Fatalf("unexpected rejects: %+v", res.rejects)
			}
			if !slices.Equal(res.rows, tt.want) {
				t.Errorf("rows:\n got %q\nwant %q", res.rows, tt.want)
			}
			if res.nrows != int64(len(tt.want)) || res.tallyN != len(tt.want) {
				t.Errorf("Rows() = %d, Tally.Rows = %d, want %d", res.nrows, res.tallyN, len(tt.want))
			}
			if len(tt.want) == 0 && len(res.batches) != 0 {
				t.Errorf("batches %v for a body without rows", res.batches)
			}
		})
	}
}

// stdHeader is the header of the standard export set.
func stdHeader() string {
	var names []string
	for _, c := range schemas.Contacts {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func TestSchemaAndExtraFields(t *testing.T) {
	body := "city,id,notes,tags,lead_score,created_at,email\n" +
		"Paris," + u1 + ",\"two\nlines\",x," + "42," + ts1 + ",\n"
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	rd, err := NewReader(strings.NewReader(body), Options{Alloc: alloc})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()

	var names []string
	for _, c := range rd.Columns() {
		names = append(names, c.Name)
	}
	if want := []string{"city", "id", "notes", "tags", "lead_score", "created_at", "email"}; !slices.Equal(names, want) {
		t.Errorf("Columns() = %v, want %v", names, want)
	}
	want := arrow.NewSchema(append(schemas.ArrowSchema(rd.Columns()).Fields(),
		arrow.Field{Name: "_line", Type: arrow.PrimitiveTypes.Int64, Nullable: false}), nil)
	if !rd.Schema().Equal(want) {
		t.Errorf("Schema() =\n%v\nwant\n%v", rd.Schema(), want)
	}
	for _, f := range rd.Schema().Fields() {
		var wantType arrow.DataType = arrow.BinaryTypes.String
		switch f.Name {
		case "tags":
			wantType = arrow.ListOf(arrow.BinaryTypes.String)
		case "created_at":
			wantType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
		case "_line":
			wantType = arrow.PrimitiveTypes.Int64
		}
		if !arrow.TypeEqual(f.Type, wantType) {
			t.Errorf("field %s has type %v, want %v", f.Name, f.Type, wantType)
		}
	}
	res := drain(t, rd)
	if res.err != nil || len(res.rejects) > 0 {
		t.Fatalf("Err %v, rejects %+v", res.err, res.rejects)
	}
	wantRows := []string{"Paris|" + u1 + `|"two\nlines"|[x]|42|2026-04-15T09:00:00Z|∅|@2`}
	if !slices.Equal(res.rows, wantRows) {
		t.Errorf("rows:\n got %q\nwant %q", res.rows, wantRows)
	}
}

func TestHeaderErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		target error  // errors.Is
		text   string // in the message
	}{
		{"empty body", "", ErrEmptyBody, "empty body"},
		{"only blank lines", "\n\r\n\n", ErrEmptyBody, "empty body"},
		{"only a BOM", "\ufeff", ErrEmptyBody, "empty body"},
		{"missing id", "full_name,created_at\nx," + ts1 + "\n", ErrHeader, "no id column"},
		{"missing created_at", "id,full_name\n" + u1 + ",x\n", ErrHeader, "no created_at column"},
		{"duplicate", "id,email,created_at,email\n", ErrHeader, `names "email" twice`},
		{"bad name", "id,Email,created_at\n", ErrHeader, `field name "Email"`},
		{"empty name", "id,,created_at\n", ErrHeader, "1 to 63 characters"},
		{"syntax error", "id,\"created_at\"x\n", ErrHeader, `extraneous or missing " in quoted-field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := NewReader(strings.NewReader(tt.body), Options{})
			if err == nil {
				rd.Release()
				t.Fatal("NewReader succeeded")
			}
			if !errors.Is(err, tt.target) {
				t.Errorf("error %q does not match %v", err, tt.target)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not say %q", err, tt.text)
			}
		})
	}
}

func TestRejects(t *testing.T) {
	good := func(line int) string { return fmt.Sprintf("%s|ok|[]|2026-04-15T09:00:00Z|@%d", u2, line) }
	okRow := u2 + ",ok,," + ts1
	tests := []struct {
		name    string
		body    string
		rejects []Reject
		rows    []string
		target  error // every reject's reason comes from an error matching it
	}{
		{
			name:    "id not a UUID",
			body:    hdr + "not-a-uuid,x,," + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{{Line: 2, Raw: "not-a-uuid,x,," + ts1, Reason: `id: not a UUID: "not-a-uuid"`}},
			rows:    []string{good(3)},
		},
		{
			name: "id of other shapes",
			body: hdr +
				"{" + u1 + "},x,," + ts1 + "\n" +
				strings.ReplaceAll(u1, "-", "") + ",x,," + ts1 + "\n" +
				strings.Replace(u1, "4", "g", 1) + ",x,," + ts1 + "\n" +
				",x,," + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{
				{Line: 2, Raw: "{" + u1 + "},x,," + ts1, Reason: `id: not a UUID: "{` + u1 + `}"`},
				{Line: 3, Raw: strings.ReplaceAll(u1, "-", "") + ",x,," + ts1, Reason: `id: not a UUID: "` + strings.ReplaceAll(u1, "-", "") + `"`},
				{Line: 4, Raw: strings.Replace(u1, "4", "g", 1) + ",x,," + ts1, Reason: `id: not a UUID: "` + strings.Replace(u1, "4", "g", 1) + `"`},
				{Line: 5, Raw: ",x,," + ts1, Reason: `id: not a UUID: ""`},
			},
			rows: []string{good(6)},
		},
		{
			name: "created_at not a timestamp",
			body: hdr +
				u1 + ",x,,2026-04-15\n" +
				u1 + ",x,,2026-04-15T09:00:00\n" +
				u1 + ",x,,2026-13-01T09:00:00Z\n" +
				u1 + ",x,,2025-02-29T09:00:00Z\n" +
				u1 + ",x,,2026-04-15T09:00:60Z\n" +
				u1 + ",x,,2026-04-15T09:00:00+5\n" +
				u1 + ",x,,\n" +
				okRow + "\n",
			rejects: []Reject{
				{Line: 2, Raw: u1 + ",x,,2026-04-15", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2026-04-15"`},
				{Line: 3, Raw: u1 + ",x,,2026-04-15T09:00:00", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2026-04-15T09:00:00"`},
				{Line: 4, Raw: u1 + ",x,,2026-13-01T09:00:00Z", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2026-13-01T09:00:00Z"`},
				{Line: 5, Raw: u1 + ",x,,2025-02-29T09:00:00Z", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2025-02-29T09:00:00Z"`},
				{Line: 6, Raw: u1 + ",x,,2026-04-15T09:00:60Z", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2026-04-15T09:00:60Z"`},
				{Line: 7, Raw: u1 + ",x,,2026-04-15T09:00:00+5", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: "2026-04-15T09:00:00+5"`},
				{Line: 8, Raw: u1 + ",x,,", Reason: `created_at: not an ISO 8601 timestamp with a UTC offset: ""`},
			},
			rows: []string{good(9)},
		},
		{
			name: "wrong number of fields",
			body: hdr + u1 + ",x," + ts1 + "\r\n" + u1 + ",x,,," + ts1 + "\r\n" + okRow + "\r\n",
			rejects: []Reject{
				{Line: 2, Raw: u1 + ",x," + ts1, Reason: "wrong number of fields: got 3, want 4"},
				{Line: 3, Raw: u1 + ",x,,," + ts1, Reason: "wrong number of fields: got 5, want 4"},
			},
			rows:   []string{good(4)},
			target: csv.ErrFieldCount,
		},
		{
			name:    "bare quote",
			body:    hdr + u1 + `,Ja"ne,,` + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{{Line: 2, Raw: u1 + `,Ja"ne,,` + ts1, Reason: `bare " in non-quoted-field`}},
			rows:    []string{good(3)},
			target:  csv.ErrBareQuote,
		},
		{
			name:    "text after closing quote",
			body:    hdr + u1 + `,"Jane"x,,` + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{{Line: 2, Raw: u1 + `,"Jane"x,,` + ts1, Reason: `extraneous or missing " in quoted-field`}},
			rows:    []string{good(3)},
			target:  csv.ErrQuote,
		},
		{
			name: "multi-line quoted row with a syntax error, and the row after it",
			body: hdr + u1 + ",\"Jane\nvan\nDoe\"x,," + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{
				{Line: 2, Raw: u1 + ",\"Jane\nvan\nDoe\"x,," + ts1, Reason: `extraneous or missing " in quoted-field`},
			},
			rows: []string{good(5)},
		},
		{
			name: "multi-line quoted row with a bad id, CRLF",
			body: "id,full_name,tags,created_at\r\nnope,\"Jane\r\nDoe\",\"a,\r\nb\"," + ts1 + "\r\n" + okRow + "\r\n",
			rejects: []Reject{
				{Line: 2, Raw: "nope,\"Jane\r\nDoe\",\"a,\r\nb\"," + ts1, Reason: `id: not a UUID: "nope"`},
			},
			rows:   []string{good(5)},
			target: ErrNotUUID,
		},
		{
			name:    "invalid UTF-8",
			body:    hdr + u1 + ",Jan\xffe,," + ts1 + "\n" + okRow + "\n",
			rejects: []Reject{{Line: 2, Raw: u1 + ",Jan\xffe,," + ts1, Reason: "full_name: invalid UTF-8"}},
			rows:    []string{good(3)},
			target:  ErrInvalidUTF8,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readAll(t, strings.NewReader(tt.body), Options{MaxRejectRatio: 1, RequestID: "req-1"})
			if err != nil {
				t.Fatalf("NewReader: %v", err)
			}
			if res.err != nil {
				t.Fatalf("Err: %v", res.err)
			}
			for i := range tt.rejects {
				tt.rejects[i].RequestID = "req-1"
			}
			if !slices.Equal(res.rejects, tt.rejects) {
				t.Errorf("rejects:\n got %+v\nwant %+v", res.rejects, tt.rejects)
			}
			if !slices.Equal(res.rows, tt.rows) {
				t.Errorf("rows:\n got %q\nwant %q", res.rows, tt.rows)
			}
			if want := int64(len(tt.rows) + len(tt.rejects)); res.nrows != want || int64(res.tallyN) != want {
				t.Errorf("Rows() = %d, Tally.Rows = %d, want %d", res.nrows, res.tallyN, want)
			}
		})
	}
}

func TestRowErrorTypes(t *testing.T) {
	// The reason of each reject comes from a *RowError whose Err matches a
	// sentinel; check the mapping directly on add.
	rd, err := NewReader(strings.NewReader(hdr), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	tests := []struct {
		fields []string
		column string
		target error
	}{
		{[]string{"x", "a", "", ts1}, "id", ErrNotUUID},
		{[]string{u1, "a", "", "x"}, "created_at", ErrBadTimestamp},
		{[]string{u1, "a", ""}, "", csv.ErrFieldCount},
		{[]string{u1, "\xff", "", ts1}, "full_name", ErrInvalidUTF8},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.fields, ","), func(t *testing.T) {
			var fields [][]byte
			for _, f := range tt.fields {
				fields = append(fields, []byte(f))
			}
			re := rd.add(fields, []byte(strings.Join(tt.fields, ",")), 7)
			if re == nil {
				t.Fatal("accepted")
			}
			if re.Line != 7 || re.Column != tt.column || !errors.Is(re, tt.target) {
				t.Errorf("got %#v (%v), want line 7, column %q, matching %v", re, re, tt.column, tt.target)
			}
			if !strings.HasPrefix(re.Error(), "line 7: ") {
				t.Errorf("Error() = %q", re.Error())
			}
		})
	}
}

func TestRecordTooLong(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes
	tests := []struct {
		name string
		row  string
	}{
		{"unquoted", u1 + "," + long + ",," + ts1},
		{"quoted over lines", u1 + ",\"" + long + "\n" + long + "\n\"\"x\"\"\",," + ts1},
		{"syntax error", u1 + ",\"" + long + "\"x" + long + ",," + ts1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := hdr + tt.row + "\n" + u2 + ",ok,," + ts1 + "\n"
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			rd, err := newReader(strings.NewReader(body), Options{Alloc: alloc, MaxRejectRatio: 1}, 16, 256)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Release()
			res := drain(t, rd)
			if res.err != nil {
				t.Fatal(res.err)
			}
			lines := strings.Count(tt.row, "\n")
			want := []string{fmt.Sprintf("%s|ok|[]|2026-04-15T09:00:00Z|@%d", u2, 3+lines)}
			if !slices.Equal(res.rows, want) {
				t.Errorf("rows %q, want %q", res.rows, want)
			}
			if len(res.rejects) != 1 {
				t.Fatalf("rejects %+v", res.rejects)
			}
			r := res.rejects[0]
			if r.Line != 2 || r.Reason != "record too long" || len(r.Raw) > 256 || !strings.HasPrefix(tt.row, r.Raw) {
				t.Errorf("reject %+v", r)
			}
		})
	}
}

func TestRawTruncated(t *testing.T) {
	long := strings.Repeat("ü", 40000) // 80,000 bytes
	body := hdr + "bad," + long + ",," + ts1 + "\n"
	res, err := readAll(t, strings.NewReader(body), Options{MaxRejectRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.rejects) != 1 {
		t.Fatalf("rejects %d", len(res.rejects))
	}
	raw := res.rejects[0].Raw
	if len(raw) > 64<<10 || len(raw) < 64<<10-3 || !strings.HasPrefix(body[len(hdr):], raw) || !utf8ValidString(raw) {
		t.Errorf("Raw of %d bytes, want the first 64 KiB cut at a character boundary", len(raw))
	}
}

func utf8ValidString(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

func TestRejectRatio(t *testing.T) {
	body := func(good, bad int) string {
		var b strings.Builder
		b.WriteString(hdr)
		for range good {
			b.WriteString(u1 + ",x,," + ts1 + "\n")
		}
		for range bad {
			b.WriteString("bad,x,," + ts1 + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name      string
		good, bad int
		max       float64
		allowed   int
		fail      bool
	}{
		{"default, 1 in 100 passes", 99, 1, 0, 0, false},
		{"default, 2 in 100 fails", 98, 2, 0, 0, true},
		{"default, 1 in 50 fails", 49, 1, 0, 0, true},
		{"half allowed, exactly half passes", 5, 5, 0.5, 0, false},
		{"half allowed, more fails", 4, 6, 0.5, 0, true},
		{"1 never fails", 0, 10, 1, 0, false},
		{"negative tolerates none", 99, 1, -1, 0, true},
		{"negative passes a clean body", 100, 0, -1, 0, false},
		{"only rejects fail by default", 0, 3, 0, 0, true},
		{"allowed rejects never fail", 2, 3, 0, 3, false},
		{"one more than allowed fails", 2, 4, 0, 3, true},
		{"allowed does not excuse a ratio above it", 1000, 20, 0, 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readAll(t, strings.NewReader(body(tt.good, tt.bad)), Options{MaxRejectRatio: tt.max, RejectsAllowed: tt.allowed, BatchRows: 10})
			if err != nil {
				t.Fatal(err)
			}
			var rre *RejectRatioError
			if !tt.fail {
				if res.err != nil {
					t.Fatalf("Err: %v", res.err)
				}
				if len(res.rows) != tt.good || len(res.rejects) != tt.bad {
					t.Errorf("%d rows, %d rejects", len(res.rows), len(res.rejects))
				}
				return
			}
			if !errors.As(res.err, &rre) || !errors.Is(res.err, ErrTooManyRejects) {
				t.Fatalf("Err = %v, want a *RejectRatioError", res.err)
			}
			if rre.Rejected != int64(tt.bad) || rre.Rows != int64(tt.good+tt.bad) {
				t.Errorf("%+v", rre)
			}
			if !strings.Contains(rre.Error(), fmt.Sprintf("%d of %d rows rejected", tt.bad, tt.good+tt.bad)) {
				t.Errorf("message %q", rre.Error())
			}
		})
	}
}

func TestBatching(t *testing.T) {
	tests := []struct {
		rows, batch int
		want        []int
	}{
		{0, 1, nil},
		{1, 1, []int{1}},
		{5, 1, []int{1, 1, 1, 1, 1}},
		{7, 3, []int{3, 3, 1}},
		{6, 3, []int{3, 3}},
		{9, 3, []int{3, 3, 3}},
		{2, 3, []int{2}},
		{3, 3, []int{3}},
		{40000, 0, []int{16384, 16384, 7232}},
		{32768, 0, []int{16384, 16384}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d rows by %d", tt.rows, tt.batch), func(t *testing.T) {
			var b strings.Builder
			b.WriteString(hdr)
			for i := range tt.rows {
				fmt.Fprintf(&b, "%s,n%d,t%d,%s\n", u1, i, i%3, time.Unix(int64(i), 0).UTC().Format(time.RFC3339))
				if i%4 == 1 {
					b.WriteString("bad,row,," + ts1 + "\n") // rejects do not count toward a batch
				}
			}
			res, err := readAll(t, strings.NewReader(b.String()), Options{BatchRows: tt.batch, MaxRejectRatio: 1})
			if err != nil {
				t.Fatal(err)
			}
			if res.err != nil {
				t.Fatal(res.err)
			}
			if !slices.Equal(res.batches, tt.want) {
				t.Errorf("batches %v, want %v", res.batches, tt.want)
			}
			for i, r := range res.rows {
				if want := fmt.Sprintf("|n%d|[t%d]|", i, i%3); !strings.Contains(r, want) {
					t.Fatalf("row %d is %q, want it to hold %q", i, r, want)
				}
			}
		})
	}
}

func TestTally(t *testing.T) {
	body := hdr +
		u1 + ",a,,2026-04-15T11:00:00+02:00\n" +
		"bad,b,,2026-04-15T10:00:00Z\n" + // rejected: its time is not counted
		u1 + ",c,,not-a-time\n" +
		u1 + ",d,,2026-04-15T08:00:00.5Z\n" +
		u1 + ",\"e\n\"x,,2026-04-15T07:00:00Z\n" +
		u1 + ",f,,2020-01-01T00:00:00Z\n"
	res, err := readAll(t, strings.NewReader(body), Options{MaxRejectRatio: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{
		time.Date(2026, 4, 15, 9, 0, 0, 0, time.UTC).UnixMicro(),
		time.Date(2026, 4, 15, 8, 0, 0, 5e8, time.UTC).UnixMicro(),
		time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro(),
	}
	if res.tallyN != 6 || !slices.Equal(res.tally, want) {
		t.Errorf("Tally = {Rows: %d, Times: %v}, want {6, %v}", res.tallyN, res.tally, want)
	}
}

// failingReader returns its data, then err.
type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReadError(t *testing.T) {
	var b strings.Builder
	b.WriteString(hdr)
	for range 50000 {
		b.WriteString(u1 + ",x,a," + ts1 + "\n")
	}
	full := b.String()
	cut := full[:len(full)-len(full)/3-7] // mid-row, after some full batches
	tests := []struct {
		name string
		data string
	}{
		{"mid body", cut},
		{"mid header", hdr[:10]},
		{"after header", hdr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streamErr := &extract.StreamError{RequestID: "req-9", Err: io.ErrUnexpectedEOF}
			alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer alloc.AssertSize(t, 0)
			rd, err := NewReader(&failingReader{data: tt.data, err: streamErr}, Options{Alloc: alloc, BatchRows: 1000})
			if err == nil {
				res := drain(t, rd)
				rd.Release()
				err = res.err
				if tt.name == "mid body" && len(res.batches) == 0 {
					t.Error("no batch before the error")
				}
			}
			var se *extract.StreamError
			if !errors.As(err, &se) || se != streamErr || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v (%T), want the *extract.StreamError", err, err)
			}
		})
	}
}

func TestReleaseMidStream(t *testing.T) {
	var b strings.Builder
	b.WriteString(hdr)
	for range 100 {
		b.WriteString(u1 + ",x,\"a,b\"," + ts1 + "\n")
	}
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	rd, err := NewReader(strings.NewReader(b.String()), Options{Alloc: alloc, BatchRows: 30})
	if err != nil {
		t.Fatal(err)
	}
	if !rd.Next() {
		t.Fatal(rd.Err())
	}
	kept := rd.RecordBatch()
	kept.Retain()
	rd.Retain()
	rd.Release() // still one reference
	if !rd.Next() {
		t.Fatal("Next after a balanced Retain/Release:", rd.Err())
	}
	rd.Release() // the last reference, with a batch current
	if rd.Next() {
		t.Error("Next after Release returned true")
	}
	if kept.NumRows() != 30 {
		t.Errorf("kept batch has %d rows", kept.NumRows())
	}
	kept.Release()
}

// endlessBody is a CSV export that never ends: the header, then the same
// row forever. It counts the data rows it has handed out.
type endlessBody struct {
	pending []byte
	rows    int64
}

func (b *endlessBody) Read(p []byte) (int, error) {
	if b.pending == nil {
		b.pending = []byte(hdr)
	}
	n := 0
	for n < len(p) {
		if len(b.pending) == 0 {
			b.pending = []byte(u1 + ",Jane Doe,lead," + ts1 + "\n")
			b.rows++
		}
		k := copy(p[n:], b.pending)
		b.pending, n = b.pending[k:], n+k
	}
	return n, nil
}

func TestMaxRows(t *testing.T) {
	row := u1 + ",Jane Doe,lead," + ts1 + "\n"
	tests := []struct {
		name    string
		body    io.Reader
		max     int
		wantErr bool
		rows    int64 // Rows() at the end
	}{
		{"under the cap", strings.NewReader(hdr + strings.Repeat(row, 4)), 5, false, 4},
		{"at the cap", strings.NewReader(hdr + strings.Repeat(row, 5)), 5, false, 5},
		{"one over", strings.NewReader(hdr + strings.Repeat(row, 6)), 5, true, 5},
		{"one over, a bad row", strings.NewReader(hdr + strings.Repeat(row, 5) + "junk\n"), 5, true, 5},
		{"endless", &endlessBody{}, 1000, true, 1000},
		{"no cap", strings.NewReader(hdr + strings.Repeat(row, 6)), 0, false, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := readAll(t, tt.body, Options{MaxRows: tt.max, BatchRows: 300, RequestID: "req_1"})
			if err != nil {
				t.Fatal(err)
			}
			if res.nrows != tt.rows || int64(res.tallyN) != tt.rows {
				t.Errorf("Rows() %d, tally %d; want %d", res.nrows, res.tallyN, tt.rows)
			}
			if !tt.wantErr {
				if res.err != nil {
					t.Fatal(res.err)
				}
				return
			}
			var pe *extract.ProtocolError
			if !errors.As(res.err, &pe) || !errors.Is(res.err, extract.ErrProtocol) {
				t.Fatalf("err %v, want an *extract.ProtocolError", res.err)
			}
			if pe.Rows != int64(tt.max)+1 || pe.RequestID != "req_1" {
				t.Errorf("error %+v, want it to stop at row %d of request req_1", pe, tt.max+1)
			}
			if !strings.Contains(pe.Error(), fmt.Sprintf("more data rows than the limit of %d", tt.max)) || !strings.Contains(pe.Error(), "nothing of this window was loaded") {
				t.Errorf("message %q does not say what happened", pe)
			}
			// Only whole batches before the cap came out; the rows of the
			// unfinished one never did.
			if len(res.rows) != len(res.batches)*300 || len(res.rows) > tt.max {
				t.Errorf("%d rows in %d batches came out", len(res.rows), len(res.batches))
			}
			if b, ok := tt.body.(*endlessBody); ok {
				// Reading stopped at the cap: what the source handed out
				// beyond it fits in the scanner's buffer.
				if extra := b.rows - int64(tt.max) - 1; extra*int64(len(row)) > initialBufferBytes {
					t.Errorf("the source handed out %d rows, %d past the cap", b.rows, extra)
				}
			}
		})
	}
}

// TestFieldsLeaveOutColumnsNotAskedFor checks that columns the request did
// not ask for are read past, in any position, and named by Ignored.
func TestFieldsLeaveOutColumnsNotAskedFor(t *testing.T) {
	alloc := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer alloc.AssertSize(t, 0)
	body := "junk,created_at,id,full_name,extra\n" +
		"\xff\xfe not text,2024-01-02T03:04:05Z,123e4567-e89b-12d3-a456-426614174000,Ann,zzz\n" +
		"j2,2024-01-03T00:00:00Z,223e4567-e89b-12d3-a456-426614174000,Bob,\n"
	rd, err := NewReader(strings.NewReader(body), Options{Alloc: alloc, Fields: []string{"full_name", "email"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	var names []string
	for _, c := range rd.Columns() {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"created_at", "id", "full_name"}) || !slices.Equal(rd.Ignored(), []string{"junk", "extra"}) {
		t.Fatalf("columns %v, ignored %v", names, rd.Ignored())
	}
	rows := 0
	for rd.Next() {
		b := rd.RecordBatch()
		if b.NumCols() != 4 {
			t.Fatalf("batch has %d columns", b.NumCols())
		}
		ids := b.Column(1).(*array.String)
		full := b.Column(2).(*array.String)
		if ids.Value(0) != "123e4567-e89b-12d3-a456-426614174000" || full.Value(1) != "Bob" {
			t.Errorf("values %s %s", ids.Value(0), full.Value(1))
		}
		rows += int(b.NumRows())
	}
	if err := rd.Err(); err != nil || rows != 2 || len(rd.Rejects()) != 0 {
		t.Errorf("rows %d, rejects %v, err %v: invalid text in an ignored column must not reject the row", rows, rd.Rejects(), err)
	}
}
