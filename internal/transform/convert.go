package transform

import (
	"strconv"
	"unsafe"
)

// hexLower maps a hex digit to its lowercase form and anything else to 0.
var hexLower = func() (t [256]byte) {
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c)
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c)
		t[c-'a'+'A'] = byte(c)
	}
	return t
}()

// canonicalUUID writes v, a UUID in 8-4-4-4-12 hex of any case, to dst in
// lowercase. It reports whether v was such a UUID.
func canonicalUUID(dst *[36]byte, v []byte) bool {
	if len(v) != 36 {
		return false
	}
	for i, c := range v {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			dst[i] = '-'
			continue
		}
		h := hexLower[c]
		if h == 0 {
			return false
		}
		dst[i] = h
	}
	return true
}

// parseTimestamp reads an ISO 8601 date-time with a UTC offset and returns it
// as Unix microseconds, dropping any precision below a microsecond. It
// accepts YYYY-MM-DD, then 'T', 't' or ' ', then hh:mm with optional :ss and
// optional fraction ('.' or ','), then 'Z', 'z' or an offset ±hh, ±hhmm or
// ±hh:mm. A time without an offset is refused: its instant is unknown.
func parseTimestamp(v []byte) (int64, bool) {
	if len(v) < len("2006-01-02T15:04Z") || v[4] != '-' || v[7] != '-' || v[13] != ':' {
		return 0, false
	}
	switch v[10] {
	case 'T', 't', ' ':
	default:
		return 0, false
	}
	year, ok1 := digits4(v[0:4])
	month, ok2 := digits2(v[5:7])
	day, ok3 := digits2(v[8:10])
	hour, ok4 := digits2(v[11:13])
	minute, ok5 := digits2(v[14:16])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return 0, false
	}
	i := 16
	second := 0
	if i < len(v) && v[i] == ':' {
		s, ok := digits2(v[i+1 : min(i+3, len(v))])
		if !ok {
			return 0, false
		}
		second = s
		i += 3
	}
	micros := 0
	if i < len(v) && (v[i] == '.' || v[i] == ',') {
		i++
		n := 0
		for ; i < len(v) && v[i] >= '0' && v[i] <= '9'; i++ {
			if n < 6 {
				micros = micros*10 + int(v[i]-'0')
			}
			n++
		}
		if n == 0 {
			return 0, false
		}
		for ; n < 6; n++ {
			micros *= 10
		}
	}
	if i >= len(v) {
		return 0, false
	}
	offset := 0 // minutes east of UTC
	switch v[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		sign := 1
		if v[i] == '-' {
			sign = -1
		}
		oh, ok := digits2(v[i+1 : min(i+3, len(v))])
		if !ok || oh > 23 {
			return 0, false
		}
		i += 3
		om := 0
		if i < len(v) {
			if v[i] == ':' {
				i++
			}
			m, ok := digits2(v[i:min(i+2, len(v))])
			if !ok || m > 59 {
				return 0, false
			}
			om = m
			i += 2
		}
		offset = sign * (oh*60 + om)
	default:
		return 0, false
	}
	if i != len(v) || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) ||
		hour > 23 || minute > 59 || second > 59 {
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+second-offset*60)
	return secs*1_000_000 + int64(micros), true
}

func digits2(b []byte) (int, bool) {
	if len(b) != 2 || b[0] < '0' || b[0] > '9' || b[1] < '0' || b[1] > '9' {
		return 0, false
	}
	return int(b[0]-'0')*10 + int(b[1]-'0'), true
}

func digits4(b []byte) (int, bool) {
	hi, ok1 := digits2(b[0:2])
	lo, ok2 := digits2(b[2:4])
	return hi*100 + lo, ok1 && ok2
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the given date of
// the proleptic Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12 // March is 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseInt64 reads a base-10 integer with an optional sign.
func parseInt64(v []byte) (int64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	// strconv copies the string into any error it returns, so aliasing v is safe.
	n, err := strconv.ParseInt(unsafe.String(&v[0], len(v)), 10, 64)
	return n, err == nil
}

// quoteValue quotes a field's value for a reject reason, shortening a long one.
func quoteValue(v []byte) string {
	const max = 80
	if len(v) > max {
		return strconv.Quote(string(truncate(v, max))) + "..."
	}
	return strconv.Quote(string(v))
}
