package load

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// idIndex knows which data files hold each id of the lake, by a 64-bit
// hash of the id: a commit finds there, without reading a file, the files
// that hold a window's ids, in its partitions and in others (a contact
// whose created_at moved). A lake builds it on its first commit, reading
// the id column of every data file once, and keeps it up to date with its
// own commits; the lock keeps other writers out. About 16 bytes an id.
//
// Why not the files' bloom filters or statistics: a window holds up to
// 50,000 ids, and a bloom filter of 10 bits a value answers "maybe" for
// about 1% of ids it lacks, so every file would be a "maybe" for ~500 of
// them; ids are random (UUID v4), so a file's min and max id span nearly
// all ids.
type idIndex struct {
	seed    maphash.Seed
	buckets [1 << bucketBits][]idEntry // by the top bits of the hash; unsorted
	files   []string                   // lake-relative paths; "" once a commit removed the file
	count   []int                      // entries of each file
	num     map[string]int32
	dead    int // entries of removed files, dropped when they outnumber the others
	live    int
}

// idEntry is one id of a data file: its hash and the file's number.
type idEntry struct {
	h uint64
	f int32
}

// bucketBits are the top bits of a hash that pick its bucket: a lake of
// 500,000 contacts has about 8 in each.
const bucketBits = 16

func (x *idIndex) sum(id string) uint64 { return maphash.String(x.seed, id) }

// holders appends to dst every file that may hold the id of hash h (a
// collision of hashes names a file that does not: one chance in 2^64 per
// pair).
func (x *idIndex) holders(dst []string, h uint64) []string {
	for _, e := range x.buckets[h>>(64-bucketBits)] {
		if e.h == h && x.files[e.f] != "" {
			dst = append(dst, x.files[e.f])
		}
	}
	return dst
}

// update forgets the files removed and adds the files added (their ids'
// hashes). The entries of removed files stay until they outnumber the
// others, so that a commit costs what it changed, not the lake's size.
func (x *idIndex) update(removed []string, added map[string][]uint64) {
	for _, rel := range removed {
		if n, ok := x.num[rel]; ok {
			x.files[n] = ""
			x.dead += x.count[n]
			x.live -= x.count[n]
			delete(x.num, rel)
		}
	}
	x.reserve(added)
	for rel, hs := range added {
		n := x.fileNum(rel)
		for _, h := range hs {
			b := &x.buckets[h>>(64-bucketBits)]
			*b = append(*b, idEntry{h, n})
		}
		x.count[n] += len(hs)
		x.live += len(hs)
	}
	if x.dead > x.live {
		for b := range x.buckets {
			x.buckets[b] = slices.DeleteFunc(x.buckets[b], func(e idEntry) bool { return x.files[e.f] == "" })
		}
		x.dead = 0
	}
}

// reserve grows the buckets for the entries to add, when they are many
// (the first commit adds every id of the lake).
func (x *idIndex) reserve(added map[string][]uint64) {
	var n int
	for _, hs := range added {
		n += len(hs)
	}
	if n < len(x.buckets) {
		return
	}
	need := make([]int32, len(x.buckets))
	for _, hs := range added {
		for _, h := range hs {
			need[h>>(64-bucketBits)]++
		}
	}
	for b, k := range need {
		x.buckets[b] = slices.Grow(x.buckets[b], int(k))
	}
}

func (x *idIndex) fileNum(rel string) int32 {
	if n, ok := x.num[rel]; ok {
		return n
	}
	n := int32(len(x.files))
	x.files = append(x.files, rel)
	x.count = append(x.count, 0)
	x.num[rel] = n
	return n
}

// idIndex returns the lake's index of ids, building it on first use.
func (l *Lake) idIndex(ctx context.Context) (*idIndex, error) {
	if l.ids != nil {
		return l.ids, nil
	}
	x := &idIndex{seed: maphash.MakeSeed(), num: map[string]int32{}}
	files, err := l.listFiles(dataDir)
	if err != nil {
		return nil, err
	}
	added := map[string][]uint64{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if added[f.rel], err = l.idHashes(f.rel, x.seed); err != nil {
			return nil, fmt.Errorf("read the ids of %s: %w", l.rootPath(f.rel), err)
		}
	}
	x.update(nil, added)
	l.ids = x
	return x, nil
}

// idHashes reads the id column of a data file, hashing each id.
func (l *Lake) idHashes(rel string, seed maphash.Seed) ([]uint64, error) {
	f, err := l.root.Open(rel)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rdr, err := file.NewParquetReader(f)
	if err != nil {
		return nil, err
	}
	defer rdr.Close()
	col := rdr.MetaData().Schema.ColumnIndexByName("id")
	if col < 0 {
		return nil, fmt.Errorf("no id column")
	}
	out := make([]uint64, 0, rdr.NumRows())
	vals := make([]parquet.ByteArray, 4096)
	defs := make([]int16, len(vals))
	for g := 0; g < rdr.NumRowGroups(); g++ {
		cr, err := rdr.RowGroup(g).Column(col)
		if err != nil {
			return nil, err
		}
		br, ok := cr.(*file.ByteArrayColumnChunkReader)
		if !ok {
			return nil, fmt.Errorf("the id column is not text")
		}
		for br.HasNext() {
			_, n, err := br.ReadBatch(int64(len(vals)), vals, defs, nil)
			if err != nil {
				return nil, err
			}
			for _, v := range vals[:n] {
				out = append(out, maphash.Bytes(seed, v))
			}
		}
	}
	return out, nil
}
