package schemas

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
)

func TestForHeader(t *testing.T) {
	for _, tc := range []struct {
		header []string
		err    string
	}{
		{[]string{"id", "created_at"}, ""},
		{[]string{"id", "full_name", "tags", "created_at", "city"}, ""},
		{[]string{"full_name", "created_at"}, "no id column"},
		{[]string{"id", "full_name"}, "no created_at column"},
		{[]string{"id", "created_at", "id"}, `names "id" twice`},
		{[]string{"id", "created_at", "Shoe Size"}, "column 3"},
		{[]string{"id", "created_at", ""}, "1 to 63"},
	} {
		cols, err := ForHeader(tc.header)
		if tc.err == "" {
			if err != nil || len(cols) != len(tc.header) {
				t.Errorf("%v: %v", tc.header, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: got %v, want an error containing %q", tc.header, err, tc.err)
		}
	}
}

func TestOneDefinitionDrivesArrowAndDuckDB(t *testing.T) {
	cols, err := ForHeader([]string{"id", "full_name", "tags", "created_at", "city"})
	if err != nil {
		t.Fatal(err)
	}
	sc := ArrowSchema(cols)
	want := map[string]string{
		"id":         "utf8",
		"full_name":  "utf8",
		"tags":       "list<item: utf8, nullable>",
		"created_at": "timestamp[us, tz=UTC]",
		"city":       "utf8",
	}
	for _, f := range sc.Fields() {
		if f.Type.String() != want[f.Name] {
			t.Errorf("%s: Arrow type %s, want %s", f.Name, f.Type, want[f.Name])
		}
		wantNull := f.Name != "id" && f.Name != "created_at" && f.Name != "tags"
		if f.Nullable != wantNull {
			t.Errorf("%s: nullable %v", f.Name, f.Nullable)
		}
	}
	if sc.Field(3).Type.(*arrow.TimestampType).Unit != arrow.Microsecond {
		t.Error("created_at is not in microseconds")
	}
	ddl := CreateTableSQL("contacts", cols)
	for _, part := range []string{`"id" UUID NOT NULL`, `"full_name" VARCHAR,`, `"tags" VARCHAR[]`, `"created_at" TIMESTAMPTZ NOT NULL`, `"city" VARCHAR)`} {
		if !strings.Contains(ddl, part) {
			t.Errorf("DDL %s lacks %s", ddl, part)
		}
	}
	if QuoteIdent(`a"b`) != `"a""b"` {
		t.Error("QuoteIdent does not escape quotes")
	}
}

func TestKindMarshalsByName(t *testing.T) {
	for k, name := range map[Kind]string{Text: "text", UUID: "uuid", Tags: "tags", Timestamp: "timestamp", Int64: "int64"} {
		b, err := json.Marshal(k)
		if err != nil || string(b) != `"`+name+`"` {
			t.Errorf("%d marshals to %s (%v), want %q", int(k), b, err, name)
		}
		var back Kind
		if err := json.Unmarshal(b, &back); err != nil || back != k {
			t.Errorf("%s reads back as %v (%v)", b, back, err)
		}
	}
	// The numbers state files held before kinds were stored by name.
	for n, want := range []Kind{Text, UUID, Tags, Timestamp, Int64} {
		var k Kind
		if err := json.Unmarshal([]byte(strconv.Itoa(n)), &k); err != nil || k != want {
			t.Errorf("old form %d reads as %v (%v), want %v", n, k, err, want)
		}
	}
	for _, bad := range []string{`"varchar"`, `7`, `-1`, `true`} {
		var k Kind
		if err := json.Unmarshal([]byte(bad), &k); err == nil {
			t.Errorf("%s read as %v, want an error", bad, k)
		}
	}
}
