package load

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// idIndex knows which data files hold each id of the lake, by a hash of
// the id: a commit finds there, without reading a file, the files that
// hold a window's ids, in its partitions and in others (a contact whose
// created_at moved). A lake builds it on its first commit, reading the id
// column of every data file once, and keeps it up to date with its own
// commits; the lock keeps other writers out. An id takes 8 bytes, and
// about 12 with the slack of growing buckets and the entries of replaced
// files not yet dropped.
//
// Why not the files' bloom filters or statistics: a window holds up to
// 50,000 ids, and a bloom filter of 10 bits a value answers "maybe" for
// about 1% of ids it lacks, so every file would be a "maybe" for ~500 of
// them; ids are random (UUID v4), so a file's min and max id span nearly
// all ids.
type idIndex struct {
	seed maphash.Seed
	// buckets, by the top bucketBits of the hash, hold entries: the next
	// entryHashBits of the hash, then the file's number in fileBits.
	buckets [1 << bucketBits][]uint64
	files   []string // by number: lake-relative paths; "" once a commit removed the file
	count   []int    // entries of each file
	num     map[string]uint64
	free    []uint64 // numbers of removed files whose entries are gone
	dead    int      // entries of removed files, dropped once they pass a quarter of the others
	live    int
}

// The layout of an index entry. The 56 bits of the hash it keeps make a
// false match of a window's id with another about one chance in 10^5 per
// window in a lake of 10 million contacts, and a false match only costs a
// file read and rewritten for nothing.
const (
	bucketBits    = 16 // a lake of 500,000 contacts has about 8 entries a bucket
	fileBits      = 24 // 16,777,216 data files
	entryHashBits = 64 - fileBits
	fileMask      = 1<<fileBits - 1
)

func (x *idIndex) sum(id string) uint64 { return maphash.String(x.seed, id) }

// entryHash is the part of hash h an entry keeps.
func entryHash(h uint64) uint64 { return h << bucketBits >> (64 - entryHashBits) }

// holders appends to dst every file that may hold the id of hash h.
func (x *idIndex) holders(dst []string, h uint64) []string {
	want := entryHash(h)
	for _, e := range x.buckets[h>>(64-bucketBits)] {
		if e>>fileBits == want && x.files[e&fileMask] != "" {
			dst = append(dst, x.files[e&fileMask])
		}
	}
	return dst
}

// update forgets the files removed and adds the files added (their ids'
// hashes). The entries of removed files stay until they pass a quarter of
// the others, so that a commit costs what it changed, not the lake's size.
func (x *idIndex) update(removed []string, added map[string][]uint64) error {
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
		n, err := x.fileNum(rel)
		if err != nil {
			return err
		}
		for _, h := range hs {
			b := &x.buckets[h>>(64-bucketBits)]
			*b = append(*b, entryHash(h)<<fileBits|n)
		}
		x.count[n] += len(hs)
		x.live += len(hs)
	}
	if x.dead > x.live/4 {
		x.compact()
	}
	return nil
}

// compact drops the entries of removed files and frees their numbers.
func (x *idIndex) compact() {
	for b := range x.buckets {
		x.buckets[b] = slices.DeleteFunc(x.buckets[b], func(e uint64) bool { return x.files[e&fileMask] == "" })
	}
	x.dead, x.free = 0, x.free[:0]
	for n, rel := range x.files {
		if rel == "" {
			x.free = append(x.free, uint64(n))
			x.count[n] = 0
		}
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

func (x *idIndex) fileNum(rel string) (uint64, error) {
	if n, ok := x.num[rel]; ok {
		return n, nil
	}
	if len(x.free) == 0 && len(x.files) > fileMask {
		x.compact()
	}
	var n uint64
	switch {
	case len(x.free) > 0:
		n, x.free = x.free[len(x.free)-1], x.free[:len(x.free)-1]
		x.files[n] = rel
	case len(x.files) <= fileMask:
		n = uint64(len(x.files))
		x.files, x.count = append(x.files, rel), append(x.count, 0)
	default:
		return 0, fmt.Errorf("the lake has more than %d data files: raise --parquet-target-size", fileMask+1)
	}
	x.num[rel] = n
	return n, nil
}

// idIndex returns the lake's index of ids, building it on first use.
func (l *Lake) idIndex(ctx context.Context) (*idIndex, error) {
	if l.ids != nil {
		return l.ids, nil
	}
	x := &idIndex{seed: maphash.MakeSeed(), num: map[string]uint64{}}
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
	if err := x.update(nil, added); err != nil {
		return nil, err
	}
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
