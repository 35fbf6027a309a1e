package fakeapi

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultFields lists the columns an export has when the request does not
// name any, in the order the API writes them.
var DefaultFields = []string{"id", "full_name", "email", "phone", "job_title", "company_name", "linkedin_url", "tags", "created_at"}

// ExtraFields lists the columns an export has only when the request names
// them with the fields parameter.
var ExtraFields = []string{"list_ids", "city", "country", "lead_score", "notes"}

// field identifies one exportable column.
type field uint8

const (
	fID field = iota
	fFullName
	fEmail
	fPhone
	fJobTitle
	fCompanyName
	fLinkedInURL
	fTags
	fCreatedAt
	fListIDs
	fCity
	fCountry
	fLeadScore
	fNotes
	numFields
)

var fieldNames = [numFields]string{
	"id", "full_name", "email", "phone", "job_title", "company_name", "linkedin_url", "tags",
	"created_at", "list_ids", "city", "country", "lead_score", "notes",
}

var fieldByName = func() map[string]field {
	m := make(map[string]field, numFields)
	for i, n := range fieldNames {
		m[n] = field(i)
	}
	return m
}()

var defaultFieldIDs = func() []field {
	fs := make([]field, len(DefaultFields))
	for i, n := range DefaultFields {
		fs[i] = fieldByName[n]
	}
	return fs
}()

// Contact is one generated contact, as the export would describe it.
type Contact struct {
	ID          string
	FullName    string
	Email       string
	Phone       string
	JobTitle    string
	CompanyName string
	LinkedInURL string
	Tags        []string
	CreatedAt   time.Time // UTC; whole seconds unless the server has Config.SubSecond
	ListIDs     []string
	City        string
	Country     string
	Notes       string
	LeadScore   int

	// Deleted says the contact was deleted (Server.Delete): no export
	// returns it any more.
	Deleted bool

	// spacedTags records that the server writes this contact's tags with a
	// space after each comma ("lead, priority").
	spacedTags bool
}

// Field returns the CSV text of one field as the server writes it: tags and
// list_ids joined with commas (tags sometimes with ", ", exactly as served),
// created_at in RFC 3339 UTC ("Z") form. It returns false for a name that is
// in neither DefaultFields nor ExtraFields.
func (c Contact) Field(name string) (string, bool) {
	f, ok := fieldByName[name]
	if !ok {
		return "", false
	}
	switch f {
	case fID:
		return c.ID, true
	case fFullName:
		return c.FullName, true
	case fEmail:
		return c.Email, true
	case fPhone:
		return c.Phone, true
	case fJobTitle:
		return c.JobTitle, true
	case fCompanyName:
		return c.CompanyName, true
	case fLinkedInURL:
		return c.LinkedInURL, true
	case fTags:
		sep := ","
		if c.spacedTags {
			sep = ", "
		}
		return strings.Join(c.Tags, sep), true
	case fCreatedAt:
		return c.CreatedAt.UTC().Format(time.RFC3339Nano), true
	case fListIDs:
		return strings.Join(c.ListIDs, ","), true
	case fCity:
		return c.City, true
	case fCountry:
		return c.Country, true
	case fLeadScore:
		return strconv.Itoa(c.LeadScore), true
	default: // fNotes
		return c.Notes, true
	}
}

// Dataset is the generated workspace: contacts sorted by creation time. It is
// immutable once built and the same for the same (Contacts, Seed). Only the
// creation times are stored; every other field is derived on demand from a
// hash of the seed and the contact's index.
type Dataset struct {
	created  []int64 // unix seconds, ascending
	frac     []int32 // microseconds within the second, ascending in it; nil: all whole seconds
	base     [numStreams]uint64
	feistel  [4]uint64
	largestT int64
	largestN int

	// Mutations (Server.Append, Edit, Delete) make a new Dataset that
	// shares the rest: a response reads one Dataset throughout.
	version map[int32]uint32 // edits of a contact; nil when none
	deleted map[int32]bool   // nil when none
	moved   map[int32]int64  // contacts whose created_at moved (Server.Move): the new time in Unix µs; nil when none
}

// Independent hash streams per contact, so that a filter can read a
// contact's tags without generating its other fields.
const (
	streamText = iota
	streamTags
	streamLists
	streamRank
	streamUUID
	streamTime
	numStreams
)

// The creation times span [spanStart, spanEnd).
var (
	spanStart = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	spanEnd   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

const golden = 0x9e3779b97f4a7c15

// mix64 is the splitmix64 finalizer, a bijection on uint64.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// rng is a splitmix64 generator; it is cheap enough to create one per
// contact and per stream.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += golden
	return mix64(r.s)
}

// intn returns a number in [0, n) for 0 < n < 1<<32.
func (r *rng) intn(n int) int {
	return int((r.next() >> 32) * uint64(n) >> 32)
}

// float returns a number in [0, 1).
func (r *rng) float() float64 {
	return float64(r.next()>>11) / (1 << 53)
}

func (d *Dataset) rng(stream, i int) rng {
	s := d.base[stream] + uint64(i)*golden
	if d.version != nil && (stream == streamText || stream == streamTags) {
		// An edited contact draws its text and tags anew.
		s += uint64(d.version[int32(i)]) * 0xd6e8feb86659fd93
	}
	return rng{s: mix64(s)}
}

// clone returns a copy of d that shares its created times (until appended
// to) and copies its mutation maps.
func (d *Dataset) clone() *Dataset {
	n := *d
	if d.version != nil {
		n.version = make(map[int32]uint32, len(d.version))
		for k, v := range d.version {
			n.version[k] = v
		}
	}
	if d.deleted != nil {
		n.deleted = make(map[int32]bool, len(d.deleted))
		for k, v := range d.deleted {
			n.deleted[k] = v
		}
	}
	return &n
}

// appended returns d with n contacts created at the unix second t added.
func (d *Dataset) appended(n int, t int64) (*Dataset, error) {
	if n < 0 || d.Len()+n > MaxContacts {
		return nil, fmt.Errorf("fakeapi: cannot append %d contacts to %d", n, d.Len())
	}
	if last := len(d.created) - 1; last >= 0 && t < d.created[last] {
		return nil, fmt.Errorf("fakeapi: contacts appended at %s would come before the last one, at %s",
			time.Unix(t, 0).UTC().Format(time.RFC3339), time.Unix(d.created[last], 0).UTC().Format(time.RFC3339))
	}
	next := d.clone()
	next.created = make([]int64, len(d.created), len(d.created)+n)
	copy(next.created, d.created)
	for range n {
		next.created = append(next.created, t)
	}
	if d.frac != nil {
		// At the whole second, or with the last contact when it is in the
		// same second: the times stay ascending.
		var f int32
		if last := len(d.created) - 1; last >= 0 && d.created[last] == t {
			f = d.frac[last]
		}
		next.frac = slices.Clone(d.frac)
		for range n {
			next.frac = append(next.frac, f)
		}
	}
	if same := sort.Search(len(next.created), func(i int) bool { return next.created[i] >= t }); len(next.created)-same > next.largestN {
		next.largestT, next.largestN = t, len(next.created)-same
	}
	return next, nil
}

// edited returns d with the contacts at idx edited once more (and live).
func (d *Dataset) edited(idx []int) *Dataset {
	next := d.clone()
	if next.version == nil {
		next.version = map[int32]uint32{}
	}
	for _, i := range idx {
		next.version[int32(i)]++
		delete(next.deleted, int32(i))
	}
	return next
}

// without returns d with the contacts at idx deleted.
func (d *Dataset) without(idx []int) *Dataset {
	next := d.clone()
	if next.deleted == nil {
		next.deleted = map[int32]bool{}
	}
	for _, i := range idx {
		next.deleted[int32(i)] = true
	}
	return next
}

// Live returns the number of contacts not deleted.
func (d *Dataset) Live() int { return d.Len() - len(d.deleted) }

// newDataset builds n contacts from seed.
func newDataset(n int, seed int64) *Dataset {
	d := &Dataset{}
	for s := range d.base {
		d.base[s] = mix64(mix64(uint64(seed)) + uint64(s+1)*0xd1b54a32d192ed03)
	}
	for k := range d.feistel {
		d.feistel[k] = mix64(d.base[streamUUID] ^ uint64(k+1)*0xa0761d6478bd642f)
	}
	d.created = buildCreated(n, rng{s: d.base[streamTime]})
	for i := 0; i < n; {
		j := i + 1
		for j < n && d.created[j] == d.created[i] {
			j++
		}
		if j-i > d.largestN {
			d.largestT, d.largestN = d.created[i], j-i
		}
		i = j
	}
	return d
}

// buildCreated returns n ascending creation times in whole seconds. Contacts
// come in groups that share one second: mostly single contacts, a quarter of
// the groups 2 to 20 contacts, and rare bulk imports of 200 to 2000. The
// groups are spread over the whole span whatever n is, denser towards the
// end (a growing workspace).
func buildCreated(n int, r rng) []int64 {
	sizes := make([]int32, 0, n/2+1)
	for total := 0; total < n; {
		g := 1
		switch u := r.float(); {
		case u < 0.0002:
			g = 200 + r.intn(1801)
		case u < 0.25:
			g = 2 + r.intn(r.intn(19)+1)
		}
		g = min(g, n-total)
		sizes = append(sizes, int32(g))
		total += g
	}
	created := make([]int64, 0, n)
	span := float64(spanEnd - spanStart)
	groups := float64(len(sizes))
	for k, g := range sizes {
		// One group per equal slot of x; f(x) = x(1.5-0.5x) maps x to the
		// time span with three times the density at the end as at the start.
		x := (float64(k) + r.float()) / groups
		t := spanStart + int64(span*x*(1.5-0.5*x))
		t = min(t, spanEnd-1)
		for range g {
			created = append(created, t)
		}
	}
	return created
}

// withFractions returns d with sub-second creation times: the contacts of
// each second spread over it in ascending order, some groups at the whole
// second, some sharing one instant, some to the millisecond, most to the
// microsecond. Which second each contact has stays.
func (d *Dataset) withFractions() *Dataset {
	next := d.clone()
	next.frac = make([]int32, len(d.created))
	r := rng{s: mix64(d.base[streamTime] ^ 0x5ec0_4d5f_7ac7_1095)}
	for i := 0; i < len(d.created); {
		j := i + 1
		for j < len(d.created) && d.created[j] == d.created[i] {
			j++
		}
		g := next.frac[i:j]
		switch u := r.float(); {
		case u < 0.3: // at the whole second
		case u < 0.45: // one instant within the second
			f := int32(r.intn(1_000_000))
			for k := range g {
				g[k] = f
			}
		case u < 0.6: // to the millisecond: some share one
			for k := range g {
				g[k] = int32(r.intn(1000) * 1000)
			}
		default:
			for k := range g {
				g[k] = int32(r.intn(1_000_000))
			}
		}
		slices.Sort(g)
		i = j
	}
	return next
}

// at returns contact i's creation time in Unix microseconds.
func (d *Dataset) at(i int) int64 {
	us := d.created[i] * 1_000_000
	if d.frac != nil {
		us += int64(d.frac[i])
	}
	return us
}

// createdTime returns contact i's creation time, moved or not.
func (d *Dataset) createdTime(i int) time.Time {
	return time.UnixMicro(d.createdOf(i)).UTC()
}

// Len returns the number of contacts.
func (d *Dataset) Len() int { return len(d.created) }

// LargestGroup returns the creation second shared by the most contacts and
// how many contacts share it; the earliest such second when several tie.
// Without Config.SubSecond they share the instant too.
func (d *Dataset) LargestGroup() (t time.Time, n int) {
	if d.largestN == 0 {
		return time.Time{}, 0
	}
	return time.Unix(d.largestT, 0).UTC(), d.largestN
}

// CreatedAt returns the creation time of contact i without generating the
// rest of it.
func (d *Dataset) CreatedAt(i int) time.Time {
	return d.createdTime(i)
}

// Contact returns contact i, for i in [0, Len()); it panics for other i.
// Contacts are sorted by CreatedAt ascending.
func (d *Dataset) Contact(i int) Contact {
	var p parts
	d.gen(i, &p)
	var buf []byte
	str := func(f field) string {
		buf = p.appendField(buf[:0], f, TimeUTC)
		return string(buf)
	}
	c := Contact{
		ID:          str(fID),
		FullName:    str(fFullName),
		Email:       str(fEmail),
		Phone:       str(fPhone),
		JobTitle:    str(fJobTitle),
		CompanyName: str(fCompanyName),
		LinkedInURL: str(fLinkedInURL),
		CreatedAt:   time.UnixMicro(p.created).UTC(),
		City:        str(fCity),
		Country:     str(fCountry),
		Notes:       str(fNotes),
		LeadScore:   int(p.score),
		Deleted:     d.deleted[int32(i)],
		spacedTags:  p.spaced,
	}
	for m := p.tags; m != 0; m &= m - 1 {
		c.Tags = append(c.Tags, tagVocabulary[bits.TrailingZeros16(m)])
	}
	for m := p.lists; m != 0; m &= m - 1 {
		c.ListIDs = append(c.ListIDs, listIDs[bits.TrailingZeros32(m)])
	}
	return c
}

// Index returns the position of the contact with the given id, and false if
// no contact has it.
func (d *Dataset) Index(id string) (int, bool) {
	hi, lo, ok := parseUUID(id)
	if !ok {
		return 0, false
	}
	i := int(d.unpermute(uint32(hi >> 32)))
	if i >= d.Len() {
		return 0, false
	}
	if h, l := d.uuid(i); h != hi || l != lo {
		return 0, false
	}
	return i, true
}

// search returns the index range [from, to) of contacts created within the
// inclusive bounds [lo, hi], in Unix microseconds.
func (d *Dataset) search(lo, hi int64) (from, to int) {
	from = sort.Search(len(d.created), func(i int) bool { return d.at(i) >= lo })
	to = sort.Search(len(d.created), func(i int) bool { return d.at(i) > hi })
	return from, max(from, to)
}

// rank returns contact i's position key in the random order: a bijection of
// i, so no two contacts share a rank.
func (d *Dataset) rank(i int) uint64 {
	return mix64(d.base[streamRank] + uint64(i)*golden)
}

// permute is a seeded 4-round Feistel permutation of 32-bit indexes. It makes
// the first 32 bits of every id distinct while looking random.
func (d *Dataset) permute(x uint32) uint32 {
	l, r := uint16(x>>16), uint16(x)
	for k := range d.feistel {
		l, r = r, l^d.round(r, k)
	}
	return uint32(l)<<16 | uint32(r)
}

func (d *Dataset) unpermute(x uint32) uint32 {
	l, r := uint16(x>>16), uint16(x)
	for k := len(d.feistel) - 1; k >= 0; k-- {
		l, r = r^d.round(l, k), l
	}
	return uint32(l)<<16 | uint32(r)
}

func (d *Dataset) round(x uint16, k int) uint16 {
	return uint16(mix64(uint64(x)^d.feistel[k]) >> 24)
}

// uuid returns contact i's id as two 64-bit halves, formatted as a version 4
// UUID: the permuted index, then hash bits with the version and variant set.
func (d *Dataset) uuid(i int) (hi, lo uint64) {
	r := d.rng(streamUUID, i)
	a, b := r.next(), r.next()
	hi = uint64(d.permute(uint32(i)))<<32 | (a>>48)<<16 | 0x4000 | (a>>32)&0x0fff
	lo = b&^(3<<62) | 1<<63
	return hi, lo
}

func appendUUID(buf []byte, hi, lo uint64) []byte {
	const hexdig = "0123456789abcdef"
	var b [36]byte
	j := 0
	for k := 0; k < 32; k++ {
		if k == 8 || k == 12 || k == 16 || k == 20 {
			b[j] = '-'
			j++
		}
		var nib uint64
		if k < 16 {
			nib = hi >> (60 - 4*k) & 0xf
		} else {
			nib = lo >> (60 - 4*(k-16)) & 0xf
		}
		b[j] = hexdig[nib]
		j++
	}
	return append(buf, b[:]...)
}

func parseUUID(s string) (hi, lo uint64, ok bool) {
	if len(s) != 36 {
		return 0, 0, false
	}
	k := 0
	for j := 0; j < 36; j++ {
		c := s[j]
		if j == 8 || j == 13 || j == 18 || j == 23 {
			if c != '-' {
				return 0, 0, false
			}
			continue
		}
		var v uint64
		switch {
		case '0' <= c && c <= '9':
			v = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			v = uint64(c-'a') + 10
		case 'A' <= c && c <= 'F':
			v = uint64(c-'A') + 10
		default:
			return 0, 0, false
		}
		if k < 16 {
			hi = hi<<4 | v
		} else {
			lo = lo<<4 | v
		}
		k++
	}
	return hi, lo, true
}

// tagInfo returns the bit set of contact i's tags (bits index tagVocabulary)
// and whether they are written with a space after each comma.
func (d *Dataset) tagInfo(i int) (mask uint16, spaced bool) {
	r := d.rng(streamTags, i)
	var n int
	switch u := r.intn(100); {
	case u < 20:
		return 0, false
	case u < 56:
		n = 1
	case u < 80:
		n = 2
	case u < 93:
		n = 3
	default:
		n = 4
	}
	for bits.OnesCount16(mask) < n {
		mask |= 1 << pickTag(&r)
	}
	return mask, n >= 2 && r.intn(8) == 0
}

var tagWeightTotal = func() int {
	t := 0
	for _, w := range tagWeights {
		t += w
	}
	return t
}()

func pickTag(r *rng) int {
	v := r.intn(tagWeightTotal)
	for k, w := range tagWeights {
		if v < w {
			return k
		}
		v -= w
	}
	return len(tagWeights) - 1
}

// listMask returns the bit set of contact i's lists (bit k is listIDs[k]).
func (d *Dataset) listMask(i int) uint32 {
	r := d.rng(streamLists, i)
	var n int
	switch u := r.intn(100); {
	case u < 25:
		return 0
	case u < 60:
		n = 1
	case u < 85:
		n = 2
	default:
		n = 3
	}
	var mask uint32
	for bits.OnesCount32(mask) < n {
		mask |= 1 << r.intn(numLists)
	}
	return mask
}

// parts holds the choices that make up one contact, so that a row can be
// rendered without allocating. A negative index means the field is empty.
type parts struct {
	idHi, idLo     uint64
	cjk            bool
	first, last    int
	emailStyle     int
	emailNum       int
	freeMail       int // index into freeMailDomains, or -1 for the company domain
	phoneStyle     int
	phoneDigits    uint64
	job, company   int
	linkedin       bool
	linkedinSuffix uint32
	tags           uint16
	spaced         bool
	created        int64 // Unix microseconds
	offset         int
	lists          uint32
	place          int
	notes          [3]int
	noteCount      int
	noteNewline    [2]bool
	score          int
}

// gen fills p with contact i's choices.
func (d *Dataset) gen(i int, p *parts) {
	p.idHi, p.idLo = d.uuid(i)
	p.created = d.createdOf(i)
	p.tags, p.spaced = d.tagInfo(i)
	p.lists = d.listMask(i)

	r := d.rng(streamText, i)
	p.cjk = r.intn(100) < 8
	if p.cjk {
		p.first, p.last = r.intn(len(cjkGivenNames)), r.intn(len(cjkFamilyNames))
	} else {
		p.first, p.last = r.intn(len(firstNames)), r.intn(len(lastNames))
	}
	p.company = -1
	if r.intn(100) >= 10 {
		p.company = r.intn(len(companies))
	}
	p.job = -1
	if r.intn(100) >= 8 {
		p.job = r.intn(len(jobTitles))
	}
	p.freeMail = -1
	if p.company < 0 || r.intn(100) < 15 {
		p.freeMail = r.intn(len(freeMailDomains))
	}
	switch u := r.intn(100); {
	case u < 50:
		p.emailStyle = 0
	case u < 70:
		p.emailStyle = 1
	case u < 85:
		p.emailStyle = 2
	case u < 95:
		p.emailStyle = 3
	default:
		p.emailStyle = 4
	}
	p.emailNum = r.intn(100)
	p.phoneStyle = -1
	if r.intn(100) >= 12 {
		p.phoneStyle = r.intn(8)
	}
	p.phoneDigits = r.next()
	p.linkedin = r.intn(100) >= 30
	p.linkedinSuffix = 0
	if r.intn(2) == 0 {
		p.linkedinSuffix = uint32(r.next())
	}
	p.offset = r.intn(len(offsetMinutes))
	p.place = r.intn(len(places))
	p.noteCount = 0
	if r.intn(100) >= 40 {
		p.noteCount = 1 + r.intn(3)
	}
	for k := range p.noteCount {
		// Distinct sentences: step through the table from a random start.
		if k == 0 {
			p.notes[0] = r.intn(len(noteSentences))
		} else {
			p.notes[k] = (p.notes[k-1] + 1 + r.intn(len(noteSentences)/3)) % len(noteSentences)
		}
	}
	p.noteNewline[0], p.noteNewline[1] = r.intn(2) == 0, r.intn(2) == 0
	p.score = r.intn(101)
}

func (p *parts) names() (first, last name) {
	if p.cjk {
		return cjkGivenNames[p.first], cjkFamilyNames[p.last]
	}
	return firstNames[p.first], lastNames[p.last]
}

// offsetZones holds one fixed zone per entry of offsetMinutes.
var offsetZones = func() []*time.Location {
	zs := make([]*time.Location, len(offsetMinutes))
	for k, m := range offsetMinutes {
		zs[k] = time.FixedZone("", m*60)
	}
	return zs
}()

// appendField appends the CSV text of field f to buf.
func (p *parts) appendField(buf []byte, f field, tf TimeFormat) []byte {
	switch f {
	case fID:
		return appendUUID(buf, p.idHi, p.idLo)
	case fFullName:
		first, last := p.names()
		if p.cjk {
			return append(append(buf, last.display...), first.display...)
		}
		return append(append(append(buf, first.display...), ' '), last.display...)
	case fEmail:
		return p.appendEmail(buf)
	case fPhone:
		return p.appendPhone(buf)
	case fJobTitle:
		if p.job < 0 {
			return buf
		}
		return append(buf, jobTitles[p.job]...)
	case fCompanyName:
		if p.company < 0 {
			return buf
		}
		return append(buf, companies[p.company].name...)
	case fLinkedInURL:
		if !p.linkedin {
			return buf
		}
		first, last := p.names()
		buf = append(buf, "https://linkedin.com/in/"...)
		buf = append(append(append(buf, first.ascii...), '-'), last.ascii...)
		if p.linkedinSuffix != 0 {
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, uint64(p.linkedinSuffix), 36)
		}
		return buf
	case fTags:
		for m, k := p.tags, 0; m != 0; m, k = m&(m-1), k+1 {
			if k > 0 {
				buf = append(buf, ',')
				if p.spaced {
					buf = append(buf, ' ')
				}
			}
			buf = append(buf, tagVocabulary[bits.TrailingZeros16(m)]...)
		}
		return buf
	case fCreatedAt:
		t := time.UnixMicro(p.created)
		if tf == TimeOffset {
			t = t.In(offsetZones[p.offset])
		} else {
			t = t.UTC()
		}
		return t.AppendFormat(buf, time.RFC3339Nano)
	case fListIDs:
		for m, k := p.lists, 0; m != 0; m, k = m&(m-1), k+1 {
			if k > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, listIDs[bits.TrailingZeros32(m)]...)
		}
		return buf
	case fCity:
		return append(buf, places[p.place].city...)
	case fCountry:
		return append(buf, places[p.place].country...)
	case fLeadScore:
		return strconv.AppendInt(buf, int64(p.score), 10)
	default: // fNotes
		for k := range p.noteCount {
			if k > 0 {
				if p.noteNewline[k-1] {
					buf = append(buf, '\n')
				} else {
					buf = append(buf, ' ')
				}
			}
			buf = append(buf, noteSentences[p.notes[k]]...)
		}
		return buf
	}
}

func (p *parts) appendEmail(buf []byte) []byte {
	first, last := p.names()
	switch p.emailStyle {
	case 0:
		buf = append(append(append(buf, first.ascii...), '.'), last.ascii...)
	case 1:
		buf = append(append(buf, first.ascii[0]), last.ascii...)
	case 2:
		buf = append(append(buf, first.ascii...), last.ascii...)
		buf = appendPadded(buf, uint64(p.emailNum), 2)
	case 3:
		buf = append(append(append(buf, first.ascii...), '_'), last.ascii...)
	default:
		buf = append(buf, first.ascii...)
	}
	buf = append(buf, '@')
	if p.freeMail >= 0 {
		return append(buf, freeMailDomains[p.freeMail]...)
	}
	return append(buf, companies[p.company].domain...)
}

func (p *parts) appendPhone(buf []byte) []byte {
	digits := p.phoneDigits
	take := func(n int) uint64 {
		m := uint64(1)
		for range n {
			m *= 10
		}
		v := digits % m
		digits /= m
		return v
	}
	group := func(buf []byte, n int, sep byte) []byte {
		buf = appendPadded(buf, take(n), n)
		if sep != 0 {
			buf = append(buf, sep)
		}
		return buf
	}
	switch p.phoneStyle {
	case -1:
		return buf
	case 0: // +1-212-555-0142
		buf = append(buf, "+1-"...)
		buf = strconv.AppendUint(buf, 200+take(3)%800, 10)
		buf = append(buf, '-')
		buf = group(buf, 3, '-')
		return group(buf, 4, 0)
	case 1: // (212) 555-0142
		buf = append(buf, '(')
		buf = strconv.AppendUint(buf, 200+take(3)%800, 10)
		buf = append(buf, ") "...)
		buf = group(buf, 3, '-')
		return group(buf, 4, 0)
	case 2: // +44 20 7946 0958
		buf = append(buf, "+44 20 "...)
		buf = group(buf, 4, ' ')
		return group(buf, 4, 0)
	case 3: // +49 30 12345678
		buf = append(buf, "+49 30 "...)
		return group(buf, 8, 0)
	case 4: // +33 1 23 45 67 89
		buf = append(buf, "+33 1 "...)
		buf = group(buf, 2, ' ')
		buf = group(buf, 2, ' ')
		buf = group(buf, 2, ' ')
		return group(buf, 2, 0)
	case 5: // +48 123 456 789
		buf = append(buf, "+48 "...)
		buf = group(buf, 3, ' ')
		buf = group(buf, 3, ' ')
		return group(buf, 3, 0)
	case 6: // +81 3-1234-5678
		buf = append(buf, "+81 3-"...)
		buf = group(buf, 4, '-')
		return group(buf, 4, 0)
	default: // 212.555.0142
		buf = strconv.AppendUint(buf, 200+take(3)%800, 10)
		buf = append(buf, '.')
		buf = group(buf, 3, '.')
		return group(buf, 4, 0)
	}
}

// appendPadded appends v zero-padded to width digits.
func appendPadded(buf []byte, v uint64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendUint(tmp[:0], v, 10)
	for k := len(s); k < width; k++ {
		buf = append(buf, '0')
	}
	return append(buf, s...)
}
