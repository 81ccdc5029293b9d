package storage

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
)

// TestTimeRecordRoundTrip: a time record's postings decode as they were written, in account
// order, whatever their size; a record of the older shape decodes as its one posting.
func TestTimeRecordRoundTrip(t *testing.T) {
	big := ledger.Uint128{Hi: ^uint64(0), Lo: ^uint64(0)}
	ps := []ledger.Posting{
		{Account: 3, Timestamp: 9, TransferID: 7, Amount: 5, Op: ledger.OpDebitPost, Split: true},
		{Account: 1 << 62, Timestamp: 9, TransferID: ^uint64(0), Amount: ^uint64(0), Held: ^uint64(0),
			Op: ledger.OpCreditPostHeld, History: true, Day: 20261127,
			After: ledger.Balance{DebitsPending: big, DebitsPosted: big, CreditsPending: big, CreditsPosted: big}},
		{Account: 2, Timestamp: 9, TransferID: 7, Amount: 5, Op: ledger.OpCreditPost},
	}
	for n := 1; n <= len(ps); n++ {
		some := slices.Clone(ps[:n])
		slices.SortFunc(some, func(a, b ledger.Posting) int { return cmp.Compare(a.Account, b.Account) })
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(i)
		}
		key := journalTimeKey(nil, 4, 9)
		val := appendTimeRecord([]byte("junk")[:0], some, idx)
		var got []ledger.Posting
		if err := decodeJournal(key, val, func(shard uint32, p ledger.Posting) error {
			if shard != 4 {
				return fmt.Errorf("shard %d", shard)
			}
			got = append(got, p)
			return nil
		}); err != nil || !slices.Equal(got, some) {
			t.Fatalf("%d postings: got %+v (%v), want %+v", n, got, err, some)
		}
		if err := journalRecordAccounts(key, val, func(uint64, uint64) {}); err != nil {
			t.Fatal(err)
		}
		// Cut short, or with a byte too many: refused.
		for _, bad := range [][]byte{val[:len(val)-1], append(slices.Clone(val), 0)} {
			if err := decodeJournal(key, bad, func(uint32, ledger.Posting) error { return nil }); err == nil {
				t.Fatalf("%d postings: malformed time record %x decoded", n, bad)
			}
		}
	}
	one := ps[0]
	var got []ledger.Posting
	err := decodeJournal(journalKey(nil, 4, one.Timestamp, one.Account), encodePosting(nil, &one),
		func(_ uint32, p ledger.Posting) error { got = append(got, p); return nil })
	if err != nil || len(got) != 1 || got[0] != one {
		t.Fatalf("a format-8 record: %+v %v", got, err)
	}
	// Keys of neither shape, or of another kind, are refused.
	entry := journalTimeKey(nil, 4, 9)
	for _, bad := range [][]byte{nil, entry[:5], append(slices.Clone(entry), 1), append([]byte{prefixPage}, entry[1:]...)} {
		if err := decodeJournal(bad, nil, func(uint32, ledger.Posting) error { return nil }); err == nil {
			t.Errorf("journal key %x decoded", bad)
		}
		if err := journalRecordAccounts(bad, nil, func(uint64, uint64) {}); err == nil {
			t.Errorf("journal key %x walked", bad)
		}
	}
}

// FuzzTimeRecord: no time record makes the decoder panic, and one it accepts encodes back to the
// same bytes.
func FuzzTimeRecord(f *testing.F) {
	ps := []ledger.Posting{{Account: 2, Timestamp: 1, TransferID: 1, Amount: 3, Op: ledger.OpDebitPost},
		{Account: 5, Timestamp: 1, TransferID: 1, Amount: 3, Op: ledger.OpCreditPost, Day: 20260101}}
	f.Add(appendTimeRecord(nil, ps, []int32{0, 1}))
	f.Add(appendTimeRecord(nil, ps, []int32{1}))
	f.Add([]byte{recordVersion, 1, 2, 0})
	f.Fuzz(func(t *testing.T, val []byte) {
		key := journalTimeKey(nil, 0, 1)
		var got []ledger.Posting
		if err := decodeJournal(key, val, func(_ uint32, p ledger.Posting) error {
			got = append(got, p)
			return nil
		}); err != nil {
			return
		}
		idx := make([]int32, len(got))
		for i := range idx {
			idx[i] = int32(i)
		}
		if again := appendTimeRecord(nil, got, idx); !bytes.Equal(again, val) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", val, got, again)
		}
	})
}

// toFormat8 rewrites a store's journal as format 8 had it: a record for each posting (j shard
// timestamp account), no time records; and its index pages as format 8 and 9 had them
// (toFormat9).
func toFormat8(t *testing.T, s *Store) {
	t.Helper()
	toFormat9(t, s)
	b := s.db.NewBatch()
	lo, hi := prefixBounds(prefixJournal)
	if err := s.Live().scan(lo, hi, false, func(k, val []byte) (bool, error) {
		if len(k) != journalTimeKeyLen {
			return false, fmt.Errorf("record %x is not a time record", k)
		}
		err := b.Delete(k, nil)
		if err == nil {
			err = decodeJournal(k, val, func(shard uint32, p ledger.Posting) error {
				return b.Set(journalKey(nil, shard, p.Timestamp, p.Account), encodePosting(nil, &p), nil)
			})
		}
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	_ = b.Set([]byte("mformat"), []byte("ledger-format-8"), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

// checkLoggedRounds reads every logged round's postings back from the event log.
func checkLoggedRounds(t *testing.T, what string, v *Reader, logged []loggedRound) {
	t.Helper()
	order := func(a, b ledger.Posting) int {
		return cmp.Or(cmp.Compare(a.Timestamp, b.Timestamp), cmp.Compare(a.Account, b.Account))
	}
	for _, l := range logged {
		ev, err := v.RoundEvents(l.lr)
		if err != nil {
			t.Fatalf("%s: round %+v: %v", what, l.lr, err)
		}
		got, want := slices.Clone(ev.Postings), slices.Clone(l.postings)
		slices.SortFunc(got, order)
		slices.SortFunc(want, order)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: round %+v: postings %+v, want %+v", what, l.lr, got, want)
		}
	}
}

// TestFormat8JournalReadAndUpgraded: a format-8 store (a record a posting) reads the same
// read-only, and opened for writing becomes format 9 and writes time records after its records: the
// balances, the postings through pages and the tail, old snapshots (which read their tail from
// the journal), the event log's postings, a restart (the tail rebuilt from both shapes) and
// Verify all agree with what was committed.
func TestFormat8JournalReadAndUpgraded(t *testing.T) {
	defer func(n int) { pageEntriesMax = n }(pageEntriesMax)
	pageEntriesMax = 5
	fs := vfs.NewMem()
	opts := Options{FS: fs, Shards: 1, PostingTailMax: 16, PagingAccountsPerRound: 2}
	s, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	j := newJournalWorld(t, s, 11)
	for range 70 {
		j.round(5)
	}
	_ = j.w.Close()
	toFormat8(t, s)
	_ = s.Close()
	rng := rand.New(rand.NewPCG(12, 12))
	check := func(what string, v *Reader) {
		t.Helper()
		checkJournalReads(t, what, v, j.model, rng)
		checkLoggedRounds(t, what, v, j.logged)
		if rep, err := Verify(v, 1); err != nil || len(rep.Problems) != 0 || rep.Postings == 0 {
			t.Fatalf("%s: verify: %+v %v", what, rep, err)
		}
	}

	// Its index pages are format 8's, which this build reads once they are moved.
	if _, err := Open("db", Options{FS: fs, ReadOnly: true}); !errors.Is(err, ErrFormat) {
		t.Fatalf("a format-8 store with index pages opened read-only: %v", err)
	}
	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	check("upgraded", s.Live())
	j.s, j.w = s, s.Writer(0)
	old := s.Snapshot()
	oldModel := j.snapshotModel()
	for range 60 {
		j.round(5)
	}
	check("upgraded and written", s.Live())
	checkJournalReads(t, "snapshot across the upgrade", old, oldModel, rng)
	if old.views[0].own == nil {
		t.Error("the old snapshot read its tail from the shared one")
	}
	_ = old.Close()
	shapes := map[int]int{}
	lo, hi := prefixBounds(prefixJournal)
	_ = s.Live().scan(lo, hi, false, func(k, _ []byte) (bool, error) {
		shapes[len(k)]++
		return true, nil
	})
	if shapes[journalKeyLen] == 0 || shapes[journalTimeKeyLen] == 0 {
		t.Fatalf("journal shapes %v: want both", shapes)
	}
	_ = j.w.Close()
	_ = s.Close()

	if s, err = Open("db", opts); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("reopened", s.Live())
	j.s, j.w = s, s.Writer(0)
	for range 20 {
		j.round(5)
	}
	check("reopened and written", s.Live())
	_ = j.w.Close()
}
