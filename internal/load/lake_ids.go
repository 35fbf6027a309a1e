package load

import (
	"context"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
)

// idIndex knows which data files hold each id of the lake, by a 64-bit
// hash of the id: a commit finds there, without reading a file, the files
// that hold a window's ids, in its partitions and in others (a contact
// whose created_at moved). A lake builds it on its first commit, reading
// the id column of every data file once, and keeps it up to date with its
// own commits; the lock keeps other writers out. About 12 bytes an id.
//
// Why not the files' bloom filters or statistics: a window holds up to
// 50,000 ids, and a bloom filter of 10 bits a value answers "maybe" for
// about 1% of ids it lacks, so every file would be a "maybe" for ~500 of
// them; ids are random (UUID v4), so a file's min and max id span nearly
// all ids.
type idIndex struct {
	seed  maphash.Seed
	hash  []uint64 // sorted
	file  []int32  // the file of each hash: an index into files
	start []int32  // hash[start[b]:start[b+1]] are the hashes whose top bits are b
	files []string // lake-relative paths; "" once a commit removed the file
	num   map[string]int32
}

// bucketBits are the top bits of a hash that pick its bucket.
const bucketBits = 16

func (x *idIndex) sum(id string) uint64 { return maphash.String(x.seed, id) }

// holders calls f with every file that may hold the id of hash h (a
// collision of hashes names a file that does not: one chance in 2^64 per
// pair).
func (x *idIndex) holders(h uint64, f func(rel string)) {
	if x.start == nil {
		return
	}
	b := h >> (64 - bucketBits)
	for i := x.start[b]; i < x.start[b+1]; i++ {
		if x.hash[i] == h {
			f(x.files[x.file[i]])
		}
	}
}

// update removes the entries of the files removed and adds those of the
// files added (their ids' hashes), keeping the hashes sorted.
func (x *idIndex) update(removed []string, added map[string][]uint64) {
	gone := map[int32]bool{}
	for _, rel := range removed {
		if n, ok := x.num[rel]; ok {
			gone[n] = true
			x.files[n] = ""
			delete(x.num, rel)
		}
	}
	var n int
	for _, hs := range added {
		n += len(hs)
	}
	fh, ff := make([]uint64, 0, n), make([]int32, 0, n)
	for _, rel := range slices.Sorted(maps.Keys(added)) {
		num := x.fileNum(rel)
		for _, h := range added[rel] {
			fh, ff = append(fh, h), append(ff, num)
		}
	}
	fh, ff = sortHashes(fh, ff)
	hash, fileOf := make([]uint64, 0, len(x.hash)+len(fh)), make([]int32, 0, len(x.hash)+len(fh))
	i := 0
	for k, h := range x.hash {
		if gone[x.file[k]] {
			continue
		}
		for ; i < len(fh) && fh[i] < h; i++ {
			hash, fileOf = append(hash, fh[i]), append(fileOf, ff[i])
		}
		hash, fileOf = append(hash, h), append(fileOf, x.file[k])
	}
	hash, fileOf = append(hash, fh[i:]...), append(fileOf, ff[i:]...)
	x.hash, x.file = hash, fileOf
	x.start = make([]int32, 1<<bucketBits+1)
	for _, h := range hash {
		x.start[h>>(64-bucketBits)+1]++
	}
	for b := 1; b < len(x.start); b++ {
		x.start[b] += x.start[b-1]
	}
}

// sortHashes sorts hashes, and files with them, by a counting sort on
// their top bits (hashes are uniform) and an insertion sort of each bucket.
func sortHashes(hs []uint64, fs []int32) ([]uint64, []int32) {
	var count [1<<bucketBits + 1]int
	for _, h := range hs {
		count[h>>(64-bucketBits)+1]++
	}
	for b := 1; b < len(count); b++ {
		count[b] += count[b-1]
	}
	oh, of := make([]uint64, len(hs)), make([]int32, len(fs))
	next := count
	for i, h := range hs {
		b := h >> (64 - bucketBits)
		oh[next[b]], of[next[b]] = h, fs[i]
		next[b]++
	}
	for b := 0; b < 1<<bucketBits; b++ {
		for i := count[b] + 1; i < count[b+1]; i++ {
			for j := i; j > count[b] && oh[j-1] > oh[j]; j-- {
				oh[j-1], oh[j] = oh[j], oh[j-1]
				of[j-1], of[j] = of[j], of[j-1]
			}
		}
	}
	return oh, of
}

func (x *idIndex) fileNum(rel string) int32 {
	if n, ok := x.num[rel]; ok {
		return n
	}
	n := int32(len(x.files))
	x.files = append(x.files, rel)
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
