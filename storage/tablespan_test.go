package storage

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestTableSpanEnds: where a table that starts at a key must end.
func TestTableSpanEnds(t *testing.T) {
	for _, c := range []struct {
		start, end []byte
	}{
		{[]byte{prefixTransfer, 0, 0, 0, 0, 0, 0, 0, 7}, []byte{prefixTransfer + 1}},
		{[]byte{prefixJournal, 0, 3, 9, 9}, []byte{prefixJournal, 0, 4}},
		{[]byte{prefixEventLog, 0x80, 0x00, 1}, []byte{prefixEventLog, 0x80, 0x01}},
		{[]byte{prefixJournal, 0xff, 0xff, 1}, []byte{prefixJournal + 1}},
		{[]byte{prefixJournal, 0}, []byte{prefixJournal + 1}},    // too short for a shard
		{[]byte{prefixJournal, 0, 5}, []byte{prefixJournal + 1}}, // a range deletion's piece
		{[]byte{prefixAccount}, []byte{prefixAccount + 1}},
		{[]byte{0xff, 1}, nil},
		{nil, nil},
	} {
		_, end, err := tableSpan(c.start)
		if err != nil || !bytes.Equal(end, c.end) {
			t.Errorf("tableSpan(%x) = %x, %v; want %x", c.start, end, err, c.end)
		}
		if end != nil && bytes.Compare(end, c.start) <= 0 {
			t.Errorf("tableSpan(%x) ends at %x, not after its start", c.start, end)
		}
	}
}

// TestTablesHoldOneStream: flushed and compacted, no sstable holds the keys of two kinds, or
// of two shards' journals or two logs, however the keys were mixed in the batches (point keys:
// a range deletion's pieces may share a table, TestRangeDeletionPiecesBounded).
func TestTablesHoldOneStream(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	kinds := []func(i uint64) []byte{
		func(i uint64) []byte { return journalKey(nil, uint32(i%2), i, rng.Uint64N(100)) },
		func(i uint64) []byte { return eventLogKey(nil, []uint16{0, 1, PaymentLogBase}[i%3], i) },
		func(i uint64) []byte { return idKey(nil, prefixTransfer, i) },
		func(i uint64) []byte { return idKey(nil, prefixEventIndex, i) },
		func(i uint64) []byte { return pageKey(nil, rng.Uint64N(1000), i) },
		func(i uint64) []byte { return clockKey(nil, uint32(i%2)) },
		func(i uint64) []byte { return pagedKey(nil, uint32(i%2)) },
		func(i uint64) []byte { return pendingKey(nil, uint32(i%2), i) },
		func(i uint64) []byte { return activeKey(nil, uint32(i%2), i) },
	}
	val := make([]byte, 100)
	for round := range uint64(30) {
		b := s.db.NewBatch()
		for i := range uint64(300) {
			k := kinds[rng.IntN(len(kinds))](round*300 + i)
			if err := b.Set(k, val, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if round%5 == 4 {
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(when string) int {
		levels, err := s.db.SSTables()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for l, tables := range levels {
			for _, tb := range tables {
				n++
				lo, hi := tb.Smallest.UserKey, tb.Largest.UserKey
				if lo[0] != hi[0] || streamKinds[lo[0]] && !bytes.Equal(lo[1:3], hi[1:3]) {
					t.Errorf("%s: L%d table %s holds %x .. %x: two kinds, shards or logs", when, l, tb.FileNum, lo, hi)
				}
			}
		}
		if st := s.Stats(); st.Tables != int64(n) {
			t.Errorf("%s: Stats counts %d tables, the levels hold %d", when, st.Tables, n)
		}
		return n
	}
	if n := check("flushed"); n < len(kinds) {
		t.Fatalf("flushed into %d tables", n)
	}
	if err := s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	check("compacted")
}

// TestSealOrdersByID: a sealed generation's accounts, the order its pages are written in,
// are each account once, and as far as sortTo was asked, the smallest ids in order: each
// run sorted when reached, and no run longer than the larger of a 128th of them and runMin,
// however the ids cluster.
func TestSealOrdersByID(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		name string
		id   func(i int) uint64
		n    int
	}{
		{"consecutive", func(i int) uint64 { return 1_000_000 + uint64(i) }, 5000},
		{"random", func(int) uint64 { return rng.Uint64() }, 5000},
		{"small", func(int) uint64 { return rng.Uint64N(300) }, 200},
		{"one", func(int) uint64 { return 42 }, 1},
		{"many, random", func(int) uint64 { return rng.Uint64() }, 300_000}, // runs of up to a 128th
		{"top bit", func(i int) uint64 { return uint64(i%2)<<63 | uint64(i) }, 1000},
		{"skewed", func(i int) uint64 { return uint64(i) << (8 * (i % 8)) }, 3000},
		{"clients and a platform account", func(i int) uint64 {
			if i == 0 {
				return 1<<62 | 1<<61
			}
			return uint64(i)
		}, 5000},
	} {
		g := newTailGen(0, nil)
		for i := range c.n {
			g.add(c.id(i), uint64(i+1))
		}
		want := slices.Sorted(slices.Values(g.accounts))
		g.seal()
		if len(g.runEnds) > 0 && g.runEnds[len(g.runEnds)-1] != len(want) {
			t.Fatalf("%s: runs end at %v", c.name, g.runEnds)
		}
		from := 0
		for _, end := range g.runEnds {
			if end <= from || end-from > max(len(want)/128, runMin) {
				t.Fatalf("%s: a run of %d accounts (%d to %d)", c.name, end-from, from, end)
			}
			from = end
		}
		if got := slices.Sorted(slices.Values(g.accounts)); !slices.Equal(got, want) {
			t.Fatalf("%s: sealed accounts are not the generation's", c.name)
		}
		for n := 0; n <= len(want); n += 1 + rng.IntN(max(len(want)/10, 1)) {
			g.sortTo(n)
			if g.sortedEnd() < n || !slices.Equal(g.accounts[:n], want[:n]) {
				t.Fatalf("%s: after sortTo(%d) (sorted to %d) the first accounts are not the smallest in order", c.name, n, g.sortedEnd())
			}
		}
		g.sortTo(len(want))
		if !slices.Equal(g.accounts, want) {
			t.Fatalf("%s: not sorted after sortTo(all)", c.name)
		}
	}
}

// TestRangeDeletionPiecesBounded: a range deletion over a stream kind that outlives its
// compaction (a snapshot holds what it deletes) is cut at span ends; its pieces, which start
// at the kind and an id, must not be spanned id by id (65,538 tables before the fix).
func TestRangeDeletionPiecesBounded(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := make([]byte, 20)
	set := func(b *pebble.Batch, from, n uint64) {
		for i := range n {
			if err := b.Set(journalKey(nil, uint32(i%2), from+i, i), val, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := s.db.NewBatch()
	set(b, 1_000_000, 20_000)
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(t.Context(), []byte{0}, []byte{0xff}, true); err != nil {
		t.Fatal(err)
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	b = s.db.NewBatch()
	if err := b.DeleteRange([]byte{prefixJournal}, []byte{prefixJournal + 1}, nil); err != nil {
		t.Fatal(err)
	}
	set(b, 1_100_000, 60_000)
	if err := b.Commit(pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Compact(t.Context(), journalKey(nil, 1, 1_100_000, 0), []byte{prefixJournal + 1}, false); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Tables; n > 100 {
		t.Fatalf("%d tables after compacting a range deletion over the journal", n)
	}
}

// BenchmarkSeal: what sealing a generation of 1,000,000 accounts costs its round (the runs'
// partition), and what sorting them all as paging reaches them costs in all (spread over the
// rounds that page them).
func BenchmarkSeal(b *testing.B) {
	for _, c := range []struct {
		name string
		id   func(rng *rand.Rand, i int) uint64
	}{
		{"dense", func(_ *rand.Rand, i int) uint64 { return 1_000_000 + uint64(i) }},
		{"random", func(rng *rand.Rand, _ int) uint64 { return rng.Uint64() }},
	} {
		const n = 1_000_000
		rng := rand.New(rand.NewPCG(11, 12))
		ids := make([]uint64, n)
		for i := range ids {
			ids[i] = c.id(rng, i)
		}
		rng.Shuffle(n, func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		b.Run(c.name+"/seal", func(b *testing.B) {
			g := &tailGen{}
			for b.Loop() {
				g.accounts = append(g.accounts[:0], ids...)
				g.seal()
			}
		})
		b.Run(c.name+"/seal+sort", func(b *testing.B) {
			g := &tailGen{}
			for b.Loop() {
				g.accounts = append(g.accounts[:0], ids...)
				g.seal()
				g.sortTo(n)
			}
		})
	}
}

// TestPagingInManyRuns: a sealed generation of more accounts than runMin is paged run by run
// in id order, over the production pacing, across a restart mid-paging: every read agrees
// with the journal, Verify finds the pages exactly the journal's postings, and each paging
// writes its accounts in ascending order.
func TestPagingInManyRuns(t *testing.T) {
	opts := Options{FS: vfs.NewMem(), Shards: 1, PostingTailMax: 4000}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	r := newRVShard(t, s, 0, 3000)
	ids := slices.Sorted(slices.Values(r.ids))
	rng := rand.New(rand.NewPCG(13, 14))
	rounds, manyRuns, restarted := 40, 0, false
	for round := range rounds {
		acc := make([]int, 400)
		for i := range acc {
			acc[i] = rng.IntN(len(r.ids))
		}
		r.round(acc...)
		if g := s.tails[0].sealed; g != nil {
			if len(g.runEnds) > 1 {
				manyRuns++
			}
			if end := min(s.tails[0].sealedNext, len(g.accounts)); !slices.IsSorted(g.accounts[:end]) {
				t.Fatalf("round %d: the %d accounts paged so far are not in id order", round, end)
			}
			if !restarted && s.tails[0].sealedNext > 0 {
				_ = r.w.Close()
				_ = s.Close()
				if s, err = Open("db", opts); err != nil {
					t.Fatal(err)
				}
				r.w, restarted = s.Writer(0), true
			}
		}
		if round%10 == 9 {
			v := s.Snapshot()
			if err := prCheck(v, ids, rng); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if problems, err := rvIndexProblems(v, 1); err != nil || len(problems) > 0 {
				t.Fatalf("round %d: verify: %v %v", round, problems, err)
			}
			_ = v.Close()
		}
	}
	if manyRuns == 0 || !restarted {
		t.Fatalf("rounds paging a generation of several runs %d, restarted %v", manyRuns, restarted)
	}
	_ = r.w.Close()
	_ = s.Close()
}
