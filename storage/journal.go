package storage

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/ledger"
)

// The journal and its index of postings by account (format 8).
//
// A posting is written once, to its shard's journal, keyed by time:
//
//	j shard timestamp account -> posting
//
// A shard's clock only grows, so each round's postings go to the end of its shard's journal:
// a memtable flush makes tables that overlap nothing below them, which compactions move down
// the tree instead of merging them into it. (Keyed by account, as before format 8, every
// flush overlapped all of Lbase, and compactions rewrote every posting several times: more
// than half of the CPU of a write-heavy run.)
//
// An account's postings are found through its index pages,
//
//	i account last -> the timestamps of up to PageEntriesMax of its postings, the last `last`
//
// which a shard writes for every posting it made since its previous pages once
// PostingTailMax of them have gathered, with, in the same batch,
//
//	x shard -> the shard's clock through which its postings are in pages (its paged mark)
//
// so that an account gets one index key for the many postings it had between two writes of
// pages, not one key for each. The postings after the paged mark (the shard's tail) are
// indexed in memory (postingTail), by the writer before each commit, and rebuilt from the
// journal when the store opens. A reader sees, of a shard's tail, the postings up to the
// shard's clock in its snapshot: a round's postings are in the tail before its commit, and
// not in the reader's snapshot unless the commit is.

const (
	prefixJournal = 'j'
	prefixPage    = 'i'
	prefixPaged   = 'x'

	journalKeyLen = 1 + 2 + 8 + 8
	pageKeyLen    = 1 + 8 + 8
	pagedKeyLen   = 1 + 2
)

// PostingTailMax is how many postings a shard indexes in memory before it writes them to index
// pages (and, with the tail it keeps for readers of the previous pages' time, the most it
// holds: twice this, 12 bytes each and a map entry per account).
const PostingTailMax = 1 << 18

// postingTailMaxMax bounds Options.PostingTailMax: the tail indexes its postings with int32.
const postingTailMaxMax = 1 << 30

// PageEntriesMax is the most postings one index page lists.
const PageEntriesMax = 1 << 12

// pageEntriesMax is what writers put in a page (less in tests).
var pageEntriesMax = PageEntriesMax

func journalKey(dst []byte, shard uint32, ts, account uint64) []byte {
	dst = append(dst[:0], prefixJournal)
	dst = be.AppendUint16(dst, uint16(shard))
	dst = be.AppendUint64(dst, ts)
	return be.AppendUint64(dst, account)
}

func journalShardBounds(shard uint32) ([]byte, []byte) {
	lo := be.AppendUint16([]byte{prefixJournal}, uint16(shard))
	hi := be.AppendUint16([]byte{prefixJournal}, uint16(shard+1))
	if shard == 0xffff {
		hi = []byte{prefixJournal + 1}
	}
	return lo, hi
}

// decodeJournal decodes a journal record.
func decodeJournal(key, val []byte) (shard uint32, p ledger.Posting, err error) {
	if len(key) != journalKeyLen || key[0] != prefixJournal {
		return 0, p, fmt.Errorf("storage: journal record %x: bad key", key)
	}
	p, err = decodePosting(be.Uint64(key[11:]), be.Uint64(key[3:]), key, val)
	return uint32(be.Uint16(key[1:])), p, err
}

func pageKey(dst []byte, account, last uint64) []byte {
	dst = idKey(dst, prefixPage, account)
	return be.AppendUint64(dst, last)
}

func pagedKey(dst []byte, shard uint32) []byte {
	dst = append(dst[:0], prefixPaged)
	return be.AppendUint16(dst, uint16(shard))
}

// pageBounds bounds the index pages of an account.
func pageBounds(account uint64) ([]byte, []byte) {
	lo := idKey(nil, prefixPage, account)
	if account == ^uint64(0) {
		return lo, []byte{prefixPage + 1}
	}
	return lo, idKey(nil, prefixPage, account+1)
}

// encodePage encodes the timestamps ts (ascending, the last one in the key): the version,
// the count, the first and then each one's distance from the one before.
func encodePage(dst []byte, ts []uint64) []byte {
	dst = append(dst[:0], recordVersion)
	dst = av(dst, uint64(len(ts)))
	var prev uint64
	for _, t := range ts {
		dst = av(dst, t-prev)
		prev = t
	}
	return dst
}

// decodePage appends a page's timestamps (ascending) to dst.
func decodePage(dst []uint64, key, val []byte) ([]uint64, error) {
	if len(key) != pageKeyLen {
		return dst, fmt.Errorf("storage: index page %x: bad key", key)
	}
	r := reader{b: val}
	if err := r.version("index page", key); err != nil {
		return dst, err
	}
	n := r.uvarint()
	if n == 0 || n > PageEntriesMax {
		return dst, fmt.Errorf("storage: index page %x: %d entries", key, n)
	}
	var t uint64
	for i := uint64(0); i < n && !r.bad; i++ {
		d := r.uvarint()
		if i > 0 && d == 0 {
			r.bad = true // timestamps strictly ascend
		}
		t += d
		dst = append(dst, t)
	}
	if err := r.done("index page", key); err != nil {
		return dst, err
	}
	if t != be.Uint64(key[9:]) {
		return dst, fmt.Errorf("storage: index page %x ends at %d, not at its key's timestamp", key, t)
	}
	return dst, nil
}

// postingTail indexes in memory a shard's postings after its paged mark: the current
// generation (since the last pages were written) and the one before it, kept for readers
// whose snapshot predates the last pages.
type postingTail struct {
	mu        sync.RWMutex
	cur, prev *tailGen
}

// tailGen is one generation of a tail: its postings' timestamps, each account's chained from
// its latest one.
type tailGen struct {
	after  uint64           // the paged mark the generation started from: it holds postings after it
	latest map[uint64]int32 // account -> the index of its latest posting in ts
	ts     []uint64
	prev   []int32 // per posting, the index of the account's one before it (-1: none)
}

func newTailGen(after uint64) *tailGen {
	return &tailGen{after: after, latest: map[uint64]int32{}}
}

func (g *tailGen) add(account, ts uint64) {
	p, ok := g.latest[account]
	if !ok {
		p = -1
	}
	g.latest[account] = int32(len(g.ts))
	g.ts = append(g.ts, ts)
	g.prev = append(g.prev, p)
}

// times appends to dst account's timestamps in g up to clock, newest first.
func (g *tailGen) times(dst []uint64, account, clock uint64) []uint64 {
	i, ok := g.latest[account]
	for ok && i >= 0 {
		if t := g.ts[i]; t <= clock {
			dst = append(dst, t)
		}
		i = g.prev[i]
	}
	return dst
}

// addRound indexes a round's postings before its commit.
func (t *postingTail) addRound(ps []ledger.Posting) {
	t.mu.Lock()
	for i := range ps {
		t.cur.add(ps[i].Account, ps[i].Timestamp)
	}
	t.mu.Unlock()
}

// rotate starts a new generation after pages for the current one were committed, through
// clock; the current one is kept for readers whose snapshot predates them.
func (t *postingTail) rotate(clock uint64) {
	t.mu.Lock()
	t.prev, t.cur = t.cur, newTailGen(clock)
	t.mu.Unlock()
}

// latest answers account's latest timestamp after paged up to clock (found false: none); ok
// false when the tail no longer holds the postings after paged.
func (t *postingTail) latest(account, paged, clock uint64) (ts uint64, found, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	gens := [2]*tailGen{t.cur, t.prev}
	switch {
	case t.cur.after == paged:
		gens[1] = nil
	case t.prev != nil && t.prev.after == paged:
	default:
		return 0, false, false
	}
	for _, g := range gens {
		if g == nil {
			continue
		}
		i, has := g.latest[account]
		for has && i >= 0 {
			if t := g.ts[i]; t <= clock {
				return t, true, true
			}
			i = g.prev[i]
		}
	}
	return 0, false, true
}

// times appends to dst account's timestamps after paged up to clock, newest first; false when
// the tail no longer holds the postings after paged (pages were written twice since).
func (t *postingTail) times(dst []uint64, account, paged, clock uint64) ([]uint64, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	switch {
	case t.cur.after == paged:
		return t.cur.times(dst, account, clock), true
	case t.prev != nil && t.prev.after == paged:
		dst = t.cur.times(dst, account, clock)
		return t.prev.times(dst, account, clock), true
	}
	return dst, false
}

// writePages writes the index pages of the tail's current generation and the paged mark
// through clock into w's batch; the caller rotates the tail once the batch is durable.
func (w *Writer) writePages(clock uint64) {
	g := w.tail.cur
	var ts []uint64
	for account, i := range g.latest {
		ts = ts[:0]
		for ; i >= 0; i = g.prev[i] {
			ts = append(ts, g.ts[i])
		}
		slices.Reverse(ts)
		for len(ts) > 0 {
			n := min(len(ts), pageEntriesMax)
			w.set(pageKey(w.key, account, ts[n-1]), encodePage(w.val, ts[:n]))
			ts = ts[n:]
		}
	}
	w.set(pagedKey(w.key, w.shard), be.AppendUint64(w.val[:0], clock))
}

// shardView is what a reader knows of a shard: its paged mark and clock in the reader's view,
// and, when the shared tail no longer holds the postings after that mark, its own tail read
// from the journal.
type shardView struct {
	loaded       bool
	paged, clock uint64
	own          map[uint64][]uint64 // account -> timestamps after paged, ascending
}

func (v *Reader) shardView(shard uint32) (*shardView, error) {
	if v.views == nil {
		v.views = make([]shardView, v.s.shards)
	}
	sv := &v.views[shard]
	if sv.loaded {
		return sv, nil
	}
	var key [pagedKeyLen]byte
	var err error
	if _, err = v.get(pagedKey(key[:0], shard), func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: paged mark of shard %d: bad length", shard)
		}
		sv.paged = be.Uint64(val)
		return nil
	}); err != nil {
		return nil, err
	}
	if sv.clock, err = v.Clock(shard); err != nil {
		return nil, err
	}
	sv.loaded = true
	return sv, nil
}

// tailTimes appends to dst the timestamps of account's postings after its shard's paged mark,
// oldest first, and answers the mark.
func (v *Reader) tailTimes(dst []uint64, account uint64) ([]uint64, uint64, error) {
	shard := ledger.ShardOf(account, v.s.shards)
	if shard >= v.s.shards {
		return dst, 0, nil // a transit id of a shard the store lacks: no such account
	}
	sv, err := v.shardView(shard)
	if err != nil {
		return dst, 0, err
	}
	if sv.own == nil {
		n := len(dst)
		var ok bool
		if dst, ok = v.s.tails[shard].times(dst, account, sv.paged, sv.clock); ok {
			slices.Reverse(dst[n:])
			return dst, sv.paged, nil
		}
		if err := v.readTail(shard, sv); err != nil {
			return dst[:n], 0, err
		}
	}
	return append(dst, sv.own[account]...), sv.paged, nil
}

// tailLatest answers the timestamp of account's latest posting after its shard's paged mark
// (found false: none), without copying the account's tail.
func (v *Reader) tailLatest(account uint64) (ts uint64, found bool, err error) {
	shard := ledger.ShardOf(account, v.s.shards)
	if shard >= v.s.shards {
		return 0, false, nil
	}
	sv, err := v.shardView(shard)
	if err != nil {
		return 0, false, err
	}
	if sv.own == nil {
		var ok bool
		if ts, found, ok = v.s.tails[shard].latest(account, sv.paged, sv.clock); ok {
			return ts, found, nil
		}
		if err := v.readTail(shard, sv); err != nil {
			return 0, false, err
		}
	}
	if own := sv.own[account]; len(own) > 0 {
		return own[len(own)-1], true, nil
	}
	return 0, false, nil
}

// readTail reads a shard's tail in v from the journal (at most PostingTailMax postings, and a
// round's), for a reader whose view the shared tail no longer holds.
func (v *Reader) readTail(shard uint32, sv *shardView) error {
	own := map[uint64][]uint64{}
	lo, hi := journalShardBounds(shard)
	err := v.scan(be.AppendUint64(lo, sv.paged+1), hi, false, func(k, _ []byte) (bool, error) {
		if len(k) != journalKeyLen {
			return false, fmt.Errorf("storage: journal record %x: bad key", k)
		}
		account := be.Uint64(k[11:])
		own[account] = append(own[account], be.Uint64(k[3:]))
		return true, nil
	})
	if err != nil {
		return err
	}
	sv.own = own
	return nil
}

// postingCursor reads accounts' postings through their index pages and the journal, reusing
// its iterators and buffers; Close it when done.
type postingCursor struct {
	v       *Reader
	snap    *pebble.Snapshot // on the live store, the snapshot the cursor reads
	pages   *renewingIter
	journal *renewingIter
	tail    []uint64
	page    []uint64
	key     [journalKeyLen]byte
}

func (v *Reader) postingCursor() *postingCursor {
	c := &postingCursor{}
	if _, snap := v.r.(*pebble.Snapshot); !snap {
		// The live store: a shard's marks, clock, pages and journal must be read in one view,
		// or pages written between two reads would list postings the tail shows too.
		c.snap = v.s.db.NewSnapshot()
		v = &Reader{r: c.snap, s: v.s, iterKeys: v.s.iterKeys}
	}
	c.v, c.pages, c.journal = v, v.renewingIter(prefixBounds(prefixPage)), v.renewingIter(prefixBounds(prefixJournal))
	return c
}

func (c *postingCursor) Close() error {
	err := errors.Join(c.pages.Close(), c.journal.Close())
	if c.snap != nil {
		err = errors.Join(err, c.snap.Close())
	}
	return err
}

// posting reads account's posting at ts from the journal.
func (c *postingCursor) posting(account, ts uint64) (ledger.Posting, error) {
	it, err := c.journal.iter()
	if err != nil {
		return ledger.Posting{}, err
	}
	k := journalKey(c.key[:0], ledger.ShardOf(account, c.v.s.shards), ts, account)
	if !it.SeekGE(k) || !bytes.Equal(it.Key(), k) {
		if err := it.Error(); err != nil {
			return ledger.Posting{}, err
		}
		return ledger.Posting{}, fmt.Errorf("storage: account %d: indexed posting at %d is not in the journal", account, ts)
	}
	val, err := it.ValueAndErr()
	if err != nil {
		return ledger.Posting{}, fmt.Errorf("storage: read posting: %w", err)
	}
	return decodePosting(account, ts, k, val)
}

// latest answers the timestamp of account's latest posting (found false: none).
func (c *postingCursor) latest(account uint64) (ts uint64, found bool, err error) {
	if ts, found, err = c.v.tailLatest(account); err != nil || found {
		return ts, found, err
	}
	it, err := c.pages.iter()
	if err != nil {
		return 0, false, err
	}
	var key [pageKeyLen]byte
	if !it.SeekLT(pageKey(key[:0], account, ^uint64(0))) || be.Uint64(it.Key()[1:]) != account {
		return 0, false, it.Error()
	}
	if len(it.Key()) != pageKeyLen {
		return 0, false, fmt.Errorf("storage: index page %x: bad key", it.Key())
	}
	return be.Uint64(it.Key()[9:]), true, nil
}

// balance sets a client account's balance from its latest posting (none: zero).
func (c *postingCursor) balance(a *ledger.Account) error {
	if a.ID >= ledger.TransitIDMin {
		return nil // transit balances are in their records
	}
	ts, found, err := c.latest(a.ID)
	if err != nil || !found {
		a.Balance = ledger.Balance{}
		return err
	}
	p, err := c.posting(a.ID, ts)
	if err != nil {
		return err
	}
	a.Balance = p.After
	return nil
}

// times calls fn with the timestamps of account's postings from lo to hi (inclusive),
// ascending, or descending when reverse, until it answers false. fn may read postings
// (posting), nothing else of the cursor.
func (c *postingCursor) times(account, lo, hi uint64, reverse bool, fn func(ts uint64) (bool, error)) error {
	var err error
	if c.tail, _, err = c.v.tailTimes(c.tail[:0], account); err != nil {
		return err
	}
	tail := c.tail // fn may use the cursor (posting), not tailTimes
	emit := func(ts []uint64) (more bool, err error) {
		for j := range ts {
			t := ts[j]
			if reverse {
				t = ts[len(ts)-1-j]
			}
			if t < lo || t > hi {
				if reverse && t < lo || !reverse && t > hi {
					return false, nil
				}
				continue
			}
			if more, err := fn(t); err != nil || !more {
				return false, err
			}
		}
		return true, nil
	}
	if reverse {
		if more, err := emit(tail); err != nil || !more {
			return err
		}
	}
	it, err := c.pages.iter()
	if err != nil {
		return err
	}
	var key [pageKeyLen]byte
	plo, phi := pageBounds(account)
	ok := it.SeekGE(pageKey(key[:0], account, lo))
	if reverse {
		ok = it.SeekGE(pageKey(key[:0], account, hi))
		if !ok || bytes.Compare(it.Key(), phi) >= 0 {
			ok = it.SeekLT(phi)
		}
	}
	for ; ok; ok = c.step(it, reverse) {
		k := it.Key()
		if bytes.Compare(k, plo) < 0 || bytes.Compare(k, phi) >= 0 {
			break
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("storage: read index page: %w", err)
		}
		if c.page, err = decodePage(c.page[:0], k, val); err != nil {
			return err
		}
		if more, err := emit(c.page); err != nil || !more {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if !reverse {
		_, err := emit(tail)
		return err
	}
	return nil
}

func (c *postingCursor) step(it *pebble.Iterator, reverse bool) bool {
	if reverse {
		return it.Prev()
	}
	return it.Next()
}

// loadTails rebuilds every shard's tail from the journal after its paged mark.
func (s *Store) loadTails() error {
	s.tails = make([]*postingTail, s.shards)
	v := s.Live()
	for shard := range s.shards {
		sv, err := v.shardView(shard)
		if err != nil {
			return err
		}
		t := &postingTail{cur: newTailGen(sv.paged)}
		lo, hi := journalShardBounds(shard)
		err = v.scan(be.AppendUint64(lo, sv.paged+1), hi, false, func(k, _ []byte) (bool, error) {
			if len(k) != journalKeyLen {
				return false, fmt.Errorf("storage: journal record %x: bad key", k)
			}
			t.cur.add(be.Uint64(k[11:]), be.Uint64(k[3:]))
			return true, nil
		})
		if err != nil {
			return err
		}
		s.tails[shard] = t
	}
	return nil
}

// upgradeBatchRecordsMax is how many records one batch of an upgrade writes.
const upgradeBatchRecordsMax = 1 << 16

// upgrade brings a store of an older format (formatsUpgradable) to formatVersion: it moves the
// postings, keyed by account before format 8, to the journal and index pages, then deletes
// them and sets the format in one synced batch. A crash before that batch leaves the older
// format with its postings, and the next open moves them again, writing the same records. A
// read-only open of an older store that has postings is refused: it cannot be read until
// they are moved.
func (s *Store) upgrade() error {
	if s.upgradeFrom == "" {
		return nil
	}
	lo, hi := prefixBounds(prefixPosting)
	has := false
	if err := (&Reader{r: s.db}).scan(lo, hi, false, func([]byte, []byte) (bool, error) {
		has = true
		return false, nil
	}); err != nil {
		return err
	}
	if s.readOnly {
		if has {
			return fmt.Errorf("%w: it has %q, whose postings this build reads once they are moved to its journal: "+
				"open it for writing once (start ledgerd on it) to move them", ErrFormat, s.upgradeFrom)
		}
		return nil
	}
	if has {
		if err := s.moveToJournal(lo, hi); err != nil {
			return fmt.Errorf("storage: upgrade from %s: %w", s.upgradeFrom, err)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	if err := b.Set([]byte{prefixMeta, 'f', 'o', 'r', 'm', 'a', 't'}, []byte(formatVersion), nil); err != nil {
		return err
	}
	if err := commitSynced(b); err != nil {
		return fmt.Errorf("storage: upgrade from %s: %w", s.upgradeFrom, err)
	}
	s.upgradeFrom = ""
	return nil
}

// moveToJournal writes every posting of the older layout (lo..hi) to the journal, and index
// pages for all of them with each shard's paged mark at its clock.
func (s *Store) moveToJournal(lo, hi []byte) error {
	w := &Writer{db: s.db, batch: s.db.NewBatch()}
	defer func() { _ = w.batch.Close() }()
	// What an interrupted upgrade wrote goes first: the older build may have written since.
	for _, prefix := range []byte{prefixJournal, prefixPage, prefixPaged} {
		lo, hi := prefixBounds(prefix)
		if err := w.batch.DeleteRange(lo, hi, nil); err != nil {
			return err
		}
	}
	records := 0
	flush := func() error {
		if err := pebbleWrite(func() error { return w.batch.Commit(pebble.NoSync) }); err != nil {
			return err
		}
		w.batch.Reset()
		records = 0
		return nil
	}
	marks := make([]uint64, s.shards)
	var ts []uint64
	var account uint64
	page := func() {
		if len(ts) > 0 {
			w.set(pageKey(w.key, account, ts[len(ts)-1]), encodePage(w.val, ts))
			records++
			ts = ts[:0]
		}
	}
	v := &Reader{r: s.db}
	err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		p, err := decodeOldPosting(k, val)
		if err != nil {
			return false, err
		}
		if p.Account != account || len(ts) == pageEntriesMax {
			page()
			account = p.Account
		}
		shard := ledger.ShardOf(p.Account, s.shards)
		w.set(journalKey(w.key, shard, p.Timestamp, p.Account), val)
		records++
		ts = append(ts, p.Timestamp)
		marks[shard] = max(marks[shard], p.Timestamp)
		if records >= upgradeBatchRecordsMax {
			return true, flush()
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	page()
	for shard := range s.shards {
		clock, err := v.Clock(shard)
		if err != nil {
			return err
		}
		if marks[shard] > clock {
			return fmt.Errorf("shard %d has a posting at %d, after its clock %d", shard, marks[shard], clock)
		}
		w.set(pagedKey(w.key, shard), be.AppendUint64(w.val[:0], clock))
	}
	return flush()
}
