package main

import (
	"strings"
)

// extensionStatement returns the first statement of sql that installs,
// loads or updates DuckDB extensions (INSTALL, FORCE INSTALL, LOAD,
// UPDATE EXTENSIONS, after EXPLAIN [ANALYZE] too), or "". query refuses
// them with a plain message before DuckDB sees them; the connection
// itself cannot download or load an extension either (load's
// OpenDuckDBReadOnly), this only says why in words.
func extensionStatement(sql string) string {
	for _, st := range splitStatements(sql) {
		words := st.heads
		for len(words) > 0 && (words[0] == "EXPLAIN" || words[0] == "ANALYZE") {
			words = words[1:]
		}
		if len(words) == 0 {
			continue
		}
		second := ""
		if len(words) > 1 {
			second = words[1]
		}
		switch {
		case words[0] == "INSTALL", words[0] == "LOAD",
			words[0] == "FORCE" && second == "INSTALL",
			words[0] == "UPDATE" && second == "EXTENSIONS":
			return strings.TrimSpace(st.text)
		}
	}
	return ""
}

// statement is one statement of a SQL text: its text and its first words
// (uppercased; a token that is not a word ends them).
type statement struct {
	text  string
	heads []string
}

// maxHeads is how many leading words of a statement splitStatements keeps.
const maxHeads = 4

// splitStatements splits sql at the semicolons that end its statements,
// skipping comments (-- and nested /* */), strings ('...', E'...' with
// backslash escapes, $tag$...$tag$) and quoted identifiers, as DuckDB's
// parser reads them.
func splitStatements(sql string) []statement {
	var out []statement
	cur := statement{}
	start, headsDone := 0, false
	addHead := func(w string) {
		if headsDone || len(cur.heads) == maxHeads {
			headsDone = true
			return
		}
		cur.heads = append(cur.heads, w)
	}
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ';':
			cur.text = sql[start:i]
			out = append(out, cur)
			cur, start, headsDone = statement{}, i+1, false
			i++
		case c == '-' && strings.HasPrefix(sql[i:], "--"):
			i = skipLine(sql, i)
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			i = skipBlockComment(sql, i)
		case c == '\'':
			i = skipQuoted(sql, i, '\'', false)
			addHead("'")
		case c == '"':
			i = skipQuoted(sql, i, '"', false)
			addHead(`"`)
		case c == '$' && dollarTag(sql[i:]) != "":
			tag := dollarTag(sql[i:])
			end := strings.Index(sql[i+len(tag):], tag)
			if end < 0 {
				i = len(sql)
			} else {
				i += len(tag) + end + len(tag)
			}
			addHead("$")
		case isWordByte(c):
			j := i
			for j < len(sql) && (isWordByte(sql[j]) || sql[j] >= '0' && sql[j] <= '9') {
				j++
			}
			if (j-i == 1 && (c == 'E' || c == 'e')) && j < len(sql) && sql[j] == '\'' {
				i = skipQuoted(sql, j, '\'', true)
				addHead("'")
				continue
			}
			addHead(strings.ToUpper(sql[i:j]))
			i = j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		default:
			addHead(string(c))
			i++
		}
	}
	if strings.TrimSpace(sql[start:]) != "" {
		cur.text = sql[start:]
		out = append(out, cur)
	}
	return out
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

// skipLine returns the index after the line comment at i.
func skipLine(sql string, i int) int {
	if n := strings.IndexByte(sql[i:], '\n'); n >= 0 {
		return i + n + 1
	}
	return len(sql)
}

// skipBlockComment returns the index after the /* */ comment at i, which
// may nest.
func skipBlockComment(sql string, i int) int {
	depth := 0
	for i < len(sql) {
		switch {
		case strings.HasPrefix(sql[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(sql[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(sql)
}

// skipQuoted returns the index after the quoted text that opens at i with
// q; a doubled q is one, and with backslashes set, \ escapes the next byte.
func skipQuoted(sql string, i int, q byte, backslashes bool) int {
	for i++; i < len(sql); i++ {
		switch {
		case backslashes && sql[i] == '\\':
			i++
		case sql[i] == q && i+1 < len(sql) && sql[i+1] == q:
			i++
		case sql[i] == q:
			return i + 1
		}
	}
	return len(sql)
}

// dollarTag returns the $tag$ (or $$) that s begins with, or "".
func dollarTag(s string) string {
	for j := 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '$':
			return s[:j+1]
		case isWordByte(c), j > 1 && c >= '0' && c <= '9':
		default:
			return ""
		}
	}
	return ""
}
