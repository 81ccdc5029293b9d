package storage

import (
	"cmp"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/internal/idmap"
	"github.com/ledgercore/ledger/ledger"
)

// The journal and its index of postings by account (format 8; format 9 its time records).
//
// A posting is written once, to its shard's journal, keyed by time, in the time record of its
// shard's timestamp (journal_time.go, which reads format 8's records of one posting too):
//
//	j shard timestamp -> the postings at that time
//
// A shard's clock only grows, so each round's postings go to the end of its shard's journal:
// a memtable flush makes tables that overlap nothing below them, which compactions move down
// the tree instead of merging them into it. (Keyed by account, as before format 8, every
// flush overlapped all of Lbase, and compactions rewrote every posting several times: more
// than half of the CPU of a write-heavy run.)
//
// An account's postings are found through its index pages, which a shard writes for every
// posting it made since its previous pages once PostingTailMax of them have gathered (a
// generation), keyed by the generation's end (format 10),
//
//	g shard gen account last -> the timestamps of up to PageEntriesMax of the account's
//	                            postings in generation gen, the last `last`
//	k account                -> the timestamp of the account's latest posting in pages, for
//	                            an account with none in the newest generation (quiet since)
//
// with, in the batch that writes a generation's last pages,
//
//	x shard -> the shard's clock through which its postings are in pages (its paged mark)
//
// so that an account gets one index key for the many postings it had in a generation, not
// one key for each. A generation's pages come after all of its shard's earlier ones, as its
// journal's records do, so their tables move down the tree without being rewritten. (Keyed
// by account, format 9's `i account last`, each generation's pages overlapped all the pages
// before them, and compactions rewrote them all again at every generation: the rate of a
// 100M-transfer run fell by a fifth from its first tenth to its last.) An account's latest
// posting in pages, which gives its balance, is in the newest generation's pages (one seek)
// or, for an account quiet since, in k: the pages of the generation after an account's last
// one write its k, and an account busy in the newest generation may have an older k (from a
// quiet spell before). Its history takes a seek in each generation between the postings read
// that lists it, two in each that does not, and none past its latest paged posting. The postings after the paged mark (the shard's tail) are
// indexed in memory (postingTail), by the writer before each commit, and rebuilt from the
// journal when the store opens. A reader sees, of a shard's tail, the postings up to the
// shard's clock in its snapshot: a round's postings are in the tail before its commit, and
// not in the reader's snapshot unless the commit is.

const (
	prefixJournal = 'j'
	prefixGenPage = 'g'
	prefixLatest  = 'k'
	prefixPaged   = 'x'
	// prefixPage: format 8 and 9's index pages (i account last), moved to generations by
	// upgrade (convertPages).
	prefixPage = 'i'

	journalKeyLen = 1 + 2 + 8 + 8
	pageKeyLen    = 1 + 8 + 8 // format 8 and 9's
	genPageKeyLen = 1 + 2 + 8 + 8 + 8
	latestKeyLen  = 1 + 8
	pagedKeyLen   = 1 + 2
)

// PostingTailMax is how many postings a shard indexes in memory before it seals them and
// writes their index pages. A shard holds at most three such generations (the current, the
// sealed one being paged, the one paged last for older readers), 12 bytes a posting and a map
// entry and an id per account in each, 4 bytes more a posting until it is grouped for its
// pages, and 8 a posting and 4 an account more while it is paged (group): some 240 MB per
// shard at 1,000,000 accounts. The
// larger it is, the more postings an account's page lists: at 1,000,000 accounts with uniform
// traffic, 2^18 left most pages one posting long, and 2^21 wrote 9% more transfers a second
// than 2^20 over 6M transfers (bench/RESULTS.md, session 9).
const PostingTailMax = 1 << 21

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

// pageKey is the key of format 9's index pages (upgrades and tests).
func pageKey(dst []byte, account, last uint64) []byte {
	dst = idKey(dst, prefixPage, account)
	return be.AppendUint64(dst, last)
}

// genPageKey is the key of an index page of account's postings in generation gen (its end,
// the paged mark once its pages are written) of shard, the last of them at last.
func genPageKey(dst []byte, shard uint32, gen, account, last uint64) []byte {
	dst = append(dst[:0], prefixGenPage)
	dst = be.AppendUint16(dst, uint16(shard))
	dst = be.AppendUint64(dst, gen)
	dst = be.AppendUint64(dst, account)
	return be.AppendUint64(dst, last)
}

// genPageAt splits the key of the index page an iterator is at, after a positioning that
// answered ok (found false: at none; an error for a key of another shape).
func genPageAt(it *pebble.Iterator, ok bool) (shard uint32, gen, account, last uint64, found bool, err error) {
	if !ok {
		return 0, 0, 0, 0, false, it.Error()
	}
	k := it.Key()
	if len(k) != genPageKeyLen || k[0] != prefixGenPage {
		return 0, 0, 0, 0, false, fmt.Errorf("storage: index page %x: bad key", k)
	}
	shard, gen, account, last = genPageParts(k)
	return shard, gen, account, last, true, nil
}

// genPageParts splits a generation page's key (its length checked by the caller).
func genPageParts(k []byte) (shard uint32, gen, account, last uint64) {
	return uint32(be.Uint16(k[1:])), be.Uint64(k[3:]), be.Uint64(k[11:]), be.Uint64(k[19:])
}

func latestKey(dst []byte, account uint64) []byte { return idKey(dst, prefixLatest, account) }

func pagedKey(dst []byte, shard uint32) []byte {
	dst = append(dst[:0], prefixPaged)
	return be.AppendUint16(dst, uint16(shard))
}

// encodePage encodes the timestamps ts (strictly ascending, the last one in the key): the
// version, the count, then from the last back each one's distance from the one before it (a
// page of one posting is two bytes).
func encodePage(dst []byte, ts []uint64) []byte {
	dst = append(dst[:0], recordVersion)
	dst = av(dst, uint64(len(ts)))
	for i := len(ts) - 1; i > 0; i-- {
		dst = av(dst, ts[i]-ts[i-1])
	}
	return dst
}

// decodePage appends a page's timestamps (ascending) to dst.
func decodePage(dst []uint64, key, val []byte) ([]uint64, error) {
	if !(len(key) == genPageKeyLen && key[0] == prefixGenPage) && !(len(key) == pageKeyLen && key[0] == prefixPage) {
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
	start := len(dst)
	t := be.Uint64(key[len(key)-8:])
	dst = append(dst, t)
	for i := uint64(1); i < n && !r.bad; i++ {
		d := r.uvarint()
		if d == 0 || d >= t {
			r.bad = true // timestamps strictly ascend, from 1
		}
		t -= d
		dst = append(dst, t)
	}
	if err := r.done("index page", key); err != nil {
		return dst[:start], err
	}
	slices.Reverse(dst[start:])
	return dst, nil
}

// postingTail indexes in memory a shard's postings after its paged mark, in generations:
// the current one (postings since the last seal), a sealed one while its pages are being
// written (a chunk of accounts each round, so that no round writes them all), and the one
// whose pages were written last, kept for readers whose snapshot predates them.
type postingTail struct {
	mu                sync.RWMutex
	prev, sealed, cur *tailGen
	// sealedNext: how much of the sealed generation's paging is done (page): its accounts' pages,
	// then the look at each account of the generation before.
	sealedNext int
	// pagingFrom: the current generation's postings when the sealed one's paging began (its
	// first round with pages), which the pacing spreads the work from.
	pagingFrom int
	// quiet: while a generation is paged after the store opened, the accounts of the one before
	// it, read from its pages (pagedAccounts); with prev in the tail, unused.
	quiet []latestAt
}

// tailGen is one generation of a tail: its postings' timestamps, each account's chained from
// its latest one.
type tailGen struct {
	after    uint64           // the mark the generation started from: it holds postings after it
	place    idmap.Map[int32] // account -> its place: the order of its first posting (grown)
	first    bool             // not sized as a generation before it (grown)
	last     []int32          // by place, the index of the account's latest posting in ts
	ts       []uint64
	prev     []int32  // per posting, the index of the account's one before it (-1: none)
	owner    []int32  // per posting, its account's place (the writer's alone)
	accounts []uint64 // in the order of their first posting; when sealed, by id (seal)
	// runEnds: when sealed, where each run of accounts ends (seal); the first sortedRuns runs
	// are sorted, the others as the pages reach them (sortTo).
	runEnds    []int
	sortedRuns int
	// While its pages are written (group): every posting's timestamp grouped by account, the
	// account of place k at grouped[groupEnd[k]:groupEnd[k+1]], ascending. grouping is
	// closed once they are there (startGroup).
	grouped  []uint64
	groupEnd []int32
	grouping chan struct{}
	warmSum  uint64 // what addRound and page read ahead, kept so that the reads are not optimized away
}

// seal orders a generation's accounts, which its pages are written in, by id: the share of
// pages a round writes then comes after the shares before it, and a generation's pages are
// one ascending run of keys after its shard's earlier ones, which compactions move down the
// tree (see tableSpan). (With pages keyed by account, format 9, the order kept a flush's table
// to one narrow run of the older pages: logged over 10M transfers, page compactions wrote 3.9
// GB in first-posting order, 1.4 GB in runs of 64 ids each unsorted, 0.34 GB sorted.) A sort of 1,000,000 ids takes 100-170 ms, too long for one round: seal
// splits them into runs of consecutive ids, none longer than the larger of a 128th of them
// and runMin (a most-significant-digit radix partition, by the highest 8 bits that differ
// within each run too long: at most 8 passes, one for ids that are dense or random; some
// 10-25 ms and an 8 MB array at 1,000,000 accounts, once a generation), and sortTo sorts each
// run when the pages reach it.
func (g *tailGen) seal() {
	a := g.accounts
	g.runEnds, g.sortedRuns = g.runEnds[:0], 0
	if len(a) == 0 {
		return
	}
	g.runEnds = appendRuns(g.runEnds, a, make([]uint64, len(a)), 0, max(len(a)/128, runMin))
}

// runMin is the longest run seal leaves unsplit whatever the count: sorting 1,024 ids when
// the pages reach them takes some 50 µs.
const runMin = 1024

// appendRuns partitions a (whose first account is at index base of the generation's) into
// runs of consecutive ids no longer than runMax, appending where each ends; scratch is as long
// as a. Accounts are distinct, so a run of two or more has a differing bit.
func appendRuns(ends []int, a, scratch []uint64, base, runMax int) []int {
	if len(a) <= runMax {
		return append(ends, base+len(a))
	}
	var diff uint64
	for _, v := range a[1:] {
		diff |= v ^ a[0]
	}
	shift := max(bits.Len64(diff)-8, 0)
	var at [257]int
	for _, v := range a {
		at[v>>shift&0xff+1]++
	}
	for d := 1; d <= 256; d++ {
		at[d] += at[d-1]
	}
	for _, v := range a {
		d := v >> shift & 0xff
		scratch[at[d]] = v
		at[d]++
	}
	copy(a, scratch)
	from := 0
	for _, to := range at[:256] {
		if to > from {
			// The bits above shift+8 are the same in a; the run's own differ below.
			ends = appendRuns(ends, a[from:to], scratch[from:to], base+from, runMax)
			from = to
		}
	}
	return ends
}

// sortTo sorts the sealed accounts' runs up to the one that holds accounts[n-1].
func (g *tailGen) sortTo(n int) {
	for from := g.sortedEnd(); from < n && g.sortedRuns < len(g.runEnds); g.sortedRuns++ {
		end := g.runEnds[g.sortedRuns]
		slices.Sort(g.accounts[from:end])
		from = end
	}
}

// sortedEnd is where the sorted runs end: accounts[:sortedEnd()] are in order.
func (g *tailGen) sortedEnd() int {
	if g.sortedRuns == 0 {
		return 0
	}
	return g.runEnds[g.sortedRuns-1]
}

// newTailGen starts a generation after the mark after, sized as like (nil: empty), the one
// before it: generations after the first are alike (PostingTailMax postings), so its arrays
// and its map do not grow, copying and rehashing, as its postings come.
func newTailGen(after uint64, like *tailGen) *tailGen {
	if like == nil {
		return &tailGen{after: after, place: idmap.New[int32](tailGenAccountsMin), first: true}
	}
	postings, accounts := len(like.ts), len(like.last)
	return &tailGen{after: after, place: idmap.New[int32](accounts + accounts/4),
		last: make([]int32, 0, accounts), accounts: make([]uint64, 0, accounts),
		ts: make([]uint64, 0, postings), prev: make([]int32, 0, postings), owner: make([]int32, 0, postings)}
}

// tailGenAccountsMin is the accounts a first generation's place map holds before it grows.
const tailGenAccountsMin = 1024

// grown returns a larger place map for g, or false when g's has room for a round's postings
// (each may be an account new to g) and, in a first generation, for the accounts opened (up
// to limit). A map that fills rehashes every account at once in the Put that
// overflows it (some tens of ms at 1,000,000 accounts, under the tail's lock): the writer
// grows it ahead instead, outside the lock (makeRoom), at least doubling it (up to limit, the
// most accounts a generation gathers before it seals, but for the round that passes it). A
// first generation, not sized as one before it, is sized as the writer opens accounts, so that
// a new store's map is built before their postings come; a later one is made a quarter larger
// than the one before (newTailGen), and seldom grows.
func (g *tailGen) grown(postings, opened, limit int) (idmap.Map[int32], bool) {
	need := g.place.Len() + postings
	if g.first {
		need = max(need, min(opened, limit))
	}
	room := g.place.Room()
	if need <= room {
		return idmap.Map[int32]{}, false
	}
	m := idmap.New[int32](max(need, min(2*room, limit)))
	for x, account := range g.accounts { // unsealed: in place order, and the writer's alone
		m.Put(account, int32(x))
	}
	return m, true
}

// add appends an account's posting: one look-up of its place, a map write only for an account
// new to the generation.
func (g *tailGen) add(account, ts uint64) {
	x, ok := g.place.Get(account)
	g.addAt(account, ts, x, ok)
}

// addAt appends an account's posting whose place find gave (found false: none then; an
// earlier posting since may have given it one).
func (g *tailGen) addAt(account, ts uint64, x int32, found bool) {
	if !found {
		if x, found = g.place.Get(account); !found {
			x = int32(len(g.last))
			g.place.Put(account, x)
			g.accounts = append(g.accounts, account)
			g.last = append(g.last, -1)
		}
	}
	g.prev = append(g.prev, g.last[x])
	g.owner = append(g.owner, x)
	g.last[x] = int32(len(g.ts))
	g.ts = append(g.ts, ts)
}

// latestOf answers the index in ts of account's latest posting (-1: none in the generation).
func (g *tailGen) latestOf(account uint64) int32 {
	if x, ok := g.place.Get(account); ok {
		return g.last[x]
	}
	return -1
}

// startGroup groups a sealed generation on a goroutine of its own, which closes g.grouping
// when done: the pass takes 13-18 ms (and the memory's zeroing), too long for the round that
// seals or the first that pages. The sealed generation's ts and owner are not written again,
// and page reads grouped only once grouping is closed. gate (tests) holds the pass until it
// is closed; nil, it runs at once.
func (g *tailGen) startGroup(gate <-chan struct{}) {
	g.grouping = make(chan struct{})
	accounts := len(g.accounts)
	go func() {
		defer close(g.grouping)
		if gate != nil {
			<-gate
		}
		g.group(accounts)
	}()
}

// group gathers a sealed generation's timestamps by account (grouped, groupEnd) in two passes
// over its postings, for its pages, and lets owner go. A walk of each account's chain instead
// reads them one cache miss at a time: over 2^21 postings, 220-235 ms a generation against
// 14-18 at 10,000 accounts, and 230 against 100-115 at 1,000,000 (BenchmarkGroupTail, with
// the look-up of each account's entry that page does). accounts is len(g.accounts).
func (g *tailGen) group(accounts int) {
	end := make([]int32, accounts+1)
	for _, k := range g.owner {
		end[k+1]++
	}
	for k := 1; k < len(end); k++ {
		end[k] += end[k-1]
	}
	at := slices.Clone(end[:accounts])
	grouped := make([]uint64, len(g.ts))
	for i, k := range g.owner {
		grouped[at[k]] = g.ts[i]
		at[k]++
	}
	g.grouped, g.groupEnd, g.owner = grouped, end, nil
}

// makeRoom grows the current generation's place map ahead of a round (tailGen.grown): built
// outside the lock, from what only the writer writes; swapped in under it.
func (t *postingTail) makeRoom(postings, opened, limit int) {
	if m, ok := t.cur.grown(postings, opened, limit); ok {
		t.mu.Lock()
		t.cur.place = m
		t.mu.Unlock()
	}
}

// addRound indexes a round's postings before its commit, warmChunk at a time: their places
// found first, outside the lock (only the writer writes them), in a loop of look-ups alone
// (with a million accounts each is a cache miss or two; the processor then has many in flight
// at once, where add waits for each in turn), then added under it. A reader sees a round's
// postings only once its snapshot has the round's clock, so it may see them enter in parts.
func (t *postingTail) addRound(ps []ledger.Posting) {
	g := t.cur
	var at [warmChunk]int32
	var found [warmChunk]bool
	for len(ps) > 0 {
		c := ps[:min(len(ps), warmChunk)]
		ps = ps[len(c):]
		var sum int32
		for i := range c {
			at[i], found[i] = g.place.Get(c[i].Account)
		}
		for i := range c {
			if found[i] {
				sum += g.last[at[i]]
			}
		}
		g.warmSum += uint64(sum)
		t.mu.Lock()
		for i := range c {
			g.addAt(c[i].Account, c[i].Timestamp, at[i], found[i])
		}
		t.mu.Unlock()
	}
}

// warmChunk is how many postings (addRound) or pages (Writer.page) are looked up ahead at a
// time: their lines (some thousand, under 100 KB) stay in a core's L2 cache until used.
const warmChunk = 256

// tailChain walks an account's postings in a tail, newest first, without the tail's lock: a
// generation's entries below the length it had when the chain was taken are never written
// again (the writer only appends). A generation's accounts, runEnds and sortedRuns are the
// writer's alone (add, seal, sortTo, Writer.page), never read by a chain.
type tailChain struct {
	gens  [3]chainGen
	n, g  int
	clock uint64
}

type chainGen struct {
	ts   []uint64
	prev []int32 // nil: ts is one account's, ascending (a reader's own tail)
	i    int32   // the next entry (-1: none)
}

// chain takes account's chain of postings after paged up to clock; false when the tail no
// longer holds the postings after paged.
func (t *postingTail) chain(account, paged, clock uint64) (c tailChain, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c.clock = clock
	for _, g := range [3]*tailGen{t.cur, t.sealed, t.prev} {
		if g == nil {
			continue
		}
		c.gens[c.n] = chainGen{ts: g.ts, prev: g.prev, i: g.latestOf(account)}
		c.n++
		if g.after == paged {
			return c, true
		}
	}
	return tailChain{}, false
}

// next answers the next timestamp, newest first, up to the chain's clock (false: no more).
func (c *tailChain) next() (uint64, bool) {
	for c.g < c.n {
		g := &c.gens[c.g]
		for g.i >= 0 {
			t := g.ts[g.i]
			if g.prev == nil {
				g.i--
			} else {
				g.i = g.prev[g.i]
			}
			if t <= c.clock {
				return t, true
			}
		}
		c.g++
	}
	return 0, false
}

// groupWaitDivisor: page waits for a sealed generation's grouping once the new generation holds
// an eighth of the tail's postings at most (PostingTailMax unless Options.PostingTailMax says
// otherwise); before that, a round goes on without pages.
const groupWaitDivisor = 8

// pagingAccountsMin is the fewest accounts' pages of a sealed generation a round writes.
const pagingAccountsMin = 64

// page writes into w's batch what this round does for the index: when the current generation
// is full, it seals it (its end in the paged mark's record) and starts a new one; while a
// sealed generation has accounts left, the pages of the next of them, in step with the new
// generation's postings (done when it is half full: each round pays a share, and no round
// writes them all), and with the last ones the paged mark at the sealed generation's end. It
// answers whether the sealed generation's pages are complete with this round (the caller then
// retires it, once the round is durable), and the paged mark's record when the round writes
// one, for the caller to write (last: its key comes after the round's others); an error only
// when the pages of the generation before cannot be read (quietAccounts).
func (w *Writer) page(clock uint64) (complete bool, mark []byte, err error) {
	t := w.tail
	if t.sealed == nil {
		if len(t.cur.ts) < w.tailMax {
			return false, nil, nil
		}
		next := newTailGen(clock, t.cur) // its allocation (some 35-65 MB zeroed) outside the lock
		t.mu.Lock()
		t.sealed, t.cur = t.cur, next
		t.mu.Unlock()
		t.sealedNext = 0
		t.sealed.seal()
		t.sealed.startGroup(w.groupGate)
		// The mark stays where it is; its record says where the sealed generation ends, so
		// that a restart seals the same postings and writes the same pages again.
		return false, be.AppendUint64(be.AppendUint64(w.mark[:0], t.sealed.after), clock), nil
	}
	g := t.sealed
	if g.grouping == nil { // sealed when the store opened: its grouping starts with its pages
		g.startGroup(w.groupGate)
	}
	select {
	case <-g.grouping:
	default:
		// Still being grouped: the rounds go on without pages while the new generation is
		// under an eighth full (the grouping takes some 15 ms; the eighth, 2^18 postings, some
		// 0.3 s at 400,000 transfers a second), then wait for it, so that the pages are
		// still spread over the rounds to half full. A test that fixes the pages a round
		// waits at once.
		if len(t.cur.ts) < w.tailMax/groupWaitDivisor && w.pagingAccounts == 0 {
			return false, nil, nil
		}
		<-g.grouping
	}
	// The work: a page for each of the sealed generation's accounts, then a look at each
	// account of the generation before it, whose latest paged posting (k) is written if it has
	// none in the sealed one (quiet: the readers find the others' in the sealed generation's
	// pages). Those of the generation before are in the tail (prev, sorted by id since its
	// pages), or, once the store opened since, read from its pages as this generation's start.
	if t.sealedNext == 0 {
		t.pagingFrom = len(t.cur.ts)
		t.quiet = t.quiet[:0]
		if t.prev == nil {
			if t.quiet, err = w.pagedAccounts(g.after, t.quiet); err != nil {
				return false, nil, err
			}
		}
	}
	accounts := g.accounts
	total, work := len(accounts), len(accounts)+len(t.quiet)
	if p := t.prev; p != nil {
		work = total + len(p.accounts)
	}
	// Paced by the new generation: the work is done by the time it is half full, a share of
	// it each round as its postings come (all at once if it is full already), spread from
	// where the paging began: a paging that began late (the store opened with the new
	// generation far along, or the grouping came late) is spread over a quarter of the
	// generation at least, up to its end, not caught up in one round.
	end := work
	if n := len(t.cur.ts); n < w.tailMax {
		target := min(w.tailMax, max(w.tailMax/2, t.pagingFrom+max(w.tailMax/4, 1))) // > pagingFrom
		share := uint64(work) * uint64(n-t.pagingFrom) / uint64(target-t.pagingFrom)
		end = max(t.sealedNext+pagingAccountsMin, int(min(uint64(work), share)))
	}
	if w.pagingAccounts > 0 && len(t.cur.ts) < w.tailMax { // a fixed number a round (tests)
		end = t.sealedNext + w.pagingAccounts
	}
	end = min(end, work)
	pagesEnd := min(end, total)
	g.sortTo(pagesEnd)
	gen := t.cur.after // the sealed generation's end: the paged mark once its pages are written
	// warmChunk accounts at a time, each step for all of them before the next (addRound):
	// their places, where their timestamps are, a look at the first, then the pages.
	var at, from, to [warmChunk]int32
	for todo := accounts[min(t.sealedNext, total):pagesEnd]; len(todo) > 0; {
		c := todo[:min(len(todo), warmChunk)]
		todo = todo[len(c):]
		for i, account := range c {
			at[i], _ = g.place.Get(account)
		}
		for i := range c {
			from[i], to[i] = g.groupEnd[at[i]], g.groupEnd[at[i]+1]
		}
		var sum uint64
		for i := range c {
			if from[i] < to[i] {
				sum += g.grouped[from[i]]
			}
		}
		g.warmSum += sum
		for i, account := range c {
			ts := g.grouped[from[i]:to[i]]
			if len(ts) == 0 {
				panic(fmt.Sprintf("storage: INVARIANT: account %d of a sealed tail has no postings", account))
			}
			for len(ts) > 0 {
				k := min(len(ts), pageEntriesMax)
				w.set(genPageKey(w.key, w.shard, gen, account, ts[k-1]), encodePage(w.val, ts[:k]))
				ts = ts[k:]
			}
		}
	}
	// The quiet accounts' k, written after the journal's records (writeLatestPaged).
	w.quiet = w.quiet[:0]
	if from, to := max(t.sealedNext, total)-total, end-total; to > from {
		if p := t.prev; p != nil {
			w.quiet = appendQuiet(w.quiet, g, p, p.accounts[from:to])
		} else {
			for _, l := range t.quiet[from:to] {
				if !g.place.Has(l.account) {
					w.quiet = append(w.quiet, l)
				}
			}
		}
	}
	t.sealedNext = end
	if end < work {
		return false, nil, nil
	}
	return true, be.AppendUint64(w.mark[:0], t.cur.after), nil
}

// appendQuiet appends to dst, with its latest posting in p, each of p's accounts that has no
// posting in g (the generation after p), warmChunk at a time, each step for all of them
// before the next (addRound): whether g has it, its place in p, its latest posting's index,
// then the posting.
func appendQuiet(dst []latestAt, g, p *tailGen, accounts []uint64) []latestAt {
	var quiet [warmChunk]uint64
	var at [warmChunk]int32
	for len(accounts) > 0 {
		c := accounts[:min(len(accounts), warmChunk)]
		accounts = accounts[len(c):]
		n := 0
		for _, account := range c {
			if !g.place.Has(account) {
				quiet[n] = account
				n++
			}
		}
		for i, account := range quiet[:n] {
			x, ok := p.place.Get(account)
			if !ok {
				panic(fmt.Sprintf("storage: INVARIANT: account %d of a tail generation has no place in it", account))
			}
			at[i] = x
		}
		for i := range n {
			at[i] = p.last[at[i]]
		}
		for i, account := range quiet[:n] {
			dst = append(dst, latestAt{account, p.ts[at[i]]})
		}
	}
	return dst
}

// latestAt is an account's latest posting in pages (k).
type latestAt struct{ account, ts uint64 }

// pagedAccounts appends to dst the accounts that have pages in generation gen of the writer's
// shard, by id, with the last posting their pages list.
func (w *Writer) pagedAccounts(gen uint64, dst []latestAt) ([]latestAt, error) {
	if gen == 0 {
		return dst, nil // no generation before the first
	}
	lo := genPageKey(nil, w.shard, gen, 0, 0)
	hi := genPageKey(nil, w.shard, gen+1, 0, 0)
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return dst, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		_, _, account, last, _, err := genPageAt(it, true)
		if err != nil {
			return dst, errors.Join(err, it.Close())
		}
		if n := len(dst); n > 0 && dst[n-1].account == account {
			dst[n-1].ts = last // an account's pages come in the order of their last postings
		} else {
			dst = append(dst, latestAt{account, last})
		}
	}
	return dst, errors.Join(it.Error(), it.Close())
}

// writeLatestPaged writes the latest paged postings (k) page chose for the round: after the
// journal's records, in key order.
func (w *Writer) writeLatestPaged() {
	for _, l := range w.quiet {
		w.set(latestKey(w.key, l.account), be.AppendUint64(w.val[:0], l.ts))
	}
	w.quiet = w.quiet[:0]
}

// retire makes the sealed generation, whose pages and mark are durable, the one kept for older
// readers.
func (t *postingTail) retire() {
	t.mu.Lock()
	g := t.sealed
	g.grouped, g.groupEnd = nil, nil // chains read only ts and prev
	t.prev, t.sealed = g, nil
	t.mu.Unlock()
	t.sealedNext, t.quiet = 0, nil
}

// decodePaged decodes a paged mark's record: the mark, and the end of the sealed generation
// whose pages are being written (0: none).
func decodePaged(shard uint32, val []byte) (paged, sealed uint64, err error) {
	switch len(val) {
	case 8:
		return be.Uint64(val), 0, nil
	case 16:
		if paged, sealed = be.Uint64(val), be.Uint64(val[8:]); sealed > paged {
			return paged, sealed, nil
		}
	}
	return 0, 0, fmt.Errorf("storage: paged mark of shard %d: bad record %x", shard, val)
}

// shardView is what a reader knows of a shard: its paged mark and clock in the reader's view,
// and, when the shared tail no longer holds the postings after that mark, its own tail read
// from the journal.
type shardView struct {
	loaded       bool
	paged, clock uint64
	sealed       uint64              // the end of the generation being paged (0: none)
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
	if _, err = v.get(pagedKey(key[:0], shard), func(val []byte) (err error) {
		sv.paged, sv.sealed, err = decodePaged(shard, val)
		return err
	}); err != nil {
		return nil, err
	}
	if sv.clock, err = v.Clock(shard); err != nil {
		return nil, err
	}
	sv.loaded = true
	return sv, nil
}

// tailChain answers account's postings after its shard's paged mark, newest first, and the
// mark.
func (v *Reader) tailChain(account uint64) (ch tailChain, paged uint64, err error) {
	shard := ledger.ShardOf(account, v.s.shards)
	if shard >= v.s.shards {
		return tailChain{}, 0, nil // a transit id of a shard the store lacks: no such account
	}
	sv, err := v.shardView(shard)
	if err != nil {
		return tailChain{}, 0, err
	}
	if sv.own == nil {
		var ok bool
		if ch, ok = v.s.tails[shard].chain(account, sv.paged, sv.clock); ok {
			return ch, sv.paged, nil
		}
		if err := v.readTail(shard, sv); err != nil {
			return tailChain{}, 0, err
		}
	}
	// The reader's own tail, ascending, as a chain of one generation.
	own := sv.own[account]
	ch = tailChain{n: 1, clock: sv.clock}
	ch.gens[0] = chainGen{ts: own, i: int32(len(own)) - 1}
	return ch, sv.paged, nil
}

// tailLatest answers the timestamp of account's latest posting after its shard's paged mark
// (found false: none), and the mark.
func (v *Reader) tailLatest(account uint64) (ts uint64, found bool, paged uint64, err error) {
	ch, paged, err := v.tailChain(account)
	if err != nil {
		return 0, false, 0, err
	}
	ts, found = ch.next()
	return ts, found, paged, nil
}

// readTail reads a shard's tail in v from the journal (at most PostingTailMax postings, and a
// round's), for a reader whose view the shared tail no longer holds.
func (v *Reader) readTail(shard uint32, sv *shardView) error {
	own := map[uint64][]uint64{}
	lo, hi := journalShardBounds(shard)
	err := v.scan(be.AppendUint64(lo, sv.paged+1), hi, false, func(k, val []byte) (bool, error) {
		err := journalRecordAccounts(k, val, func(account, ts uint64) { own[account] = append(own[account], ts) })
		return err == nil, err
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
	c.v, c.pages, c.journal = v, v.renewingIter(prefixBounds(prefixGenPage)), v.renewingIter(prefixBounds(prefixJournal))
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
	p, found, err := seekPosting(it, true, &c.key, ledger.ShardOf(account, c.v.s.shards), ts, account)
	if err == nil && !found {
		err = fmt.Errorf("storage: account %d: indexed posting at %d is not in the journal", account, ts)
	}
	return p, err
}

// latest answers the timestamp of account's latest posting (found false: none).
func (c *postingCursor) latest(account uint64) (ts uint64, found bool, err error) {
	var paged uint64
	if ts, found, paged, err = c.v.tailLatest(account); err != nil || found {
		return ts, found, err
	}
	return c.pagedLatest(account, paged)
}

// pagedLatest answers account's latest posting in pages up to paged (found false: none).
func (c *postingCursor) pagedLatest(account, paged uint64) (ts uint64, found bool, err error) {
	// In the newest generation's pages, or, for an account that has none there, in k (written
	// with the pages of the generation after its last).
	it, err := c.pages.iter()
	if err != nil {
		return 0, false, err
	}
	shard := ledger.ShardOf(account, c.v.s.shards)
	var pk [genPageKeyLen]byte
	if paged > 0 {
		s, gen, a, last, found, err := genPageAt(it, it.SeekLT(genPageKey(pk[:0], shard, paged, account, ^uint64(0))))
		if err != nil {
			return 0, false, err
		}
		if found && s == shard && gen == paged && a == account {
			return last, true, nil
		}
	}
	var key [latestKeyLen]byte
	if found, err = c.v.get(latestKey(key[:0], account), func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: account %d's latest paged posting: bad record %x", account, val)
		}
		ts = be.Uint64(val)
		return nil
	}); err != nil || !found {
		return 0, false, err
	}
	// Written with the pages of the generation after the posting's: at most the paged mark.
	if ts > paged {
		return 0, false, fmt.Errorf("storage: account %d's latest paged posting at %d is past its shard's paged mark %d", account, ts, paged)
	}
	return ts, true, nil
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
	ch, paged, err := c.v.tailChain(account)
	if err != nil {
		return err
	}
	// emit calls fn with the postings of ts from lo to hi, and answers whether the call is
	// done: fn stopped, or the postings passed lo (reverse) or hi. Pages list postings up to
	// the mark (those of a generation being paged, after it, are in the tail).
	const more, done = 0, 1
	emit := func(ts []uint64) (int, error) {
		for j := range ts {
			t := ts[j]
			if reverse {
				t = ts[len(ts)-1-j]
			}
			switch {
			case reverse && t < lo, !reverse && t > hi:
				return done, nil
			case t < lo || t > hi:
				continue
			}
			if next, err := fn(t); err != nil || !next {
				return done, err
			}
		}
		return more, nil
	}
	if reverse { // the tail first, newest first, as far as fn wants
		for t, ok := ch.next(); ok && t >= lo; t, ok = ch.next() {
			if t > hi {
				continue
			}
			if next, err := fn(t); err != nil || !next {
				return err
			}
		}
	}
	// No page lists a posting after the account's latest paged one: walk no generation past it.
	// (Before the pages' iterator is taken: pagedLatest's use of it may renew it.)
	last, pagedAny, err := c.pagedLatest(account, paged)
	if err != nil {
		return err
	}
	it, err := c.pages.iter()
	if err != nil {
		return err
	}
	r := more
	if pagedAny && last >= lo {
		err = genPages(it, ledger.ShardOf(account, c.v.s.shards), account, lo, min(hi, last), paged, reverse, func(k, val []byte) (bool, error) {
			var err error
			if c.page, err = decodePage(c.page[:0], k, val); err != nil {
				return false, err
			}
			r, err = emit(c.page)
			return err == nil && r == more, err
		})
	}
	if err != nil || reverse || r == done {
		return err
	}
	// Forward, the tail last: its postings from lo on, oldest first.
	c.tail = c.tail[:0]
	for t, ok := ch.next(); ok && t >= lo; t, ok = ch.next() {
		c.tail = append(c.tail, t)
	}
	slices.Reverse(c.tail)
	_, err = emit(c.tail)
	return err
}

// genPages calls fn with account's index pages (key and value) in the generations of shard
// that may list its postings from lo to hi and that the paged mark covers, ascending, or
// descending when reverse, until fn answers false. A generation gen lists postings after the
// one before it and up to gen, so those from lo on are in the generations from lo on. It
// seeks once a generation that lists the account, twice one that does not.
func genPages(it *pebble.Iterator, shard uint32, account, lo, hi, paged uint64, reverse bool, fn func(k, val []byte) (bool, error)) error {
	var key [genPageKeyLen]byte
	at := func(ok bool) (gen, acct uint64, ofShard bool, err error) {
		s, gen, acct, _, found, err := genPageAt(it, ok)
		return gen, acct, found && s == shard, err
	}
	// pages calls fn with the account's pages in gen from the iterator's position on.
	pages := func(gen uint64) (bool, error) {
		for ok := true; ok; {
			g, a, ofShard, err := at(true)
			if err != nil {
				return false, err
			}
			if !ofShard || g != gen || a != account {
				return true, nil
			}
			val, err := it.ValueAndErr()
			if err != nil {
				return false, fmt.Errorf("storage: read index page: %w", err)
			}
			if next, err := fn(it.Key(), val); err != nil || !next {
				return false, err
			}
			if reverse {
				ok = it.Prev()
			} else {
				ok = it.Next()
			}
		}
		return true, it.Error()
	}
	if !reverse {
		for m := lo; m <= paged; {
			gen, acct, ok, err := at(it.SeekGE(genPageKey(key[:0], shard, m, account, 0)))
			switch {
			case err != nil || !ok || gen > paged:
				return err
			case acct == account:
				if next, err := pages(gen); err != nil || !next {
					return err
				}
			case gen > m: // the first keys of a later generation: the account's may follow
				m = gen
				continue
			}
			if gen >= hi || gen == ^uint64(0) {
				return nil // the generations after the first at or past hi list postings after it
			}
			m = gen + 1
		}
		return nil
	}
	m := paged
	if hi < paged { // from the generation that lists hi, if any: the first one at or past it
		gen, _, ok, err := at(it.SeekGE(genPageKey(key[:0], shard, hi, 0, 0)))
		if err != nil {
			return err
		}
		if ok && gen <= paged {
			m = gen
		}
	}
	for {
		gen, acct, ok, err := at(it.SeekLT(genPageKey(key[:0], shard, m, account, ^uint64(0))))
		switch {
		case err != nil || !ok:
			return err
		case acct == account:
			if next, err := pages(gen); err != nil || !next {
				return err
			}
		case gen < m: // the last keys of an earlier generation: the account's may precede
			m = gen
			continue
		}
		if gen < lo || gen == 0 {
			return nil
		}
		m = gen - 1
	}
}

// loadTails rebuilds every shard's tail from the journal after its paged mark: a generation
// being paged when the store closed is sealed again, to the same end, and its pages are
// written again from its first account (the same records).
func (s *Store) loadTails() error {
	s.tails = make([]*postingTail, s.shards)
	v := s.Live()
	for shard := range s.shards {
		sv, err := v.shardView(shard)
		if err != nil {
			return err
		}
		t := &postingTail{cur: newTailGen(sv.paged, nil)}
		if sv.sealed != 0 {
			t.sealed, t.cur = t.cur, newTailGen(sv.sealed, nil)
		}
		lo, hi := journalShardBounds(shard)
		err = v.scan(be.AppendUint64(lo, sv.paged+1), hi, false, func(k, val []byte) (bool, error) {
			err := journalRecordAccounts(k, val, func(account, ts uint64) {
				g := t.cur
				if t.sealed != nil && ts <= sv.sealed {
					g = t.sealed
				}
				g.add(account, ts)
			})
			return err == nil, err
		})
		if err != nil {
			return err
		}
		if t.sealed != nil {
			t.sealed.seal() // grouped when its pages start (page): a read-only store never
		}
		s.tails[shard] = t
	}
	return nil
}

// upgradeBatchRecordsMax is how many records one batch of an upgrade writes.
const upgradeBatchRecordsMax = 1 << 16

// upgradeBatches writes a step of an upgrade in unsynced batches of at most
// upgradeBatchRecordsMax records (its writer's set, counted in records); the upgrade's last
// batch, synced, deletes the older records and sets the format.
type upgradeBatches struct {
	w       *Writer
	records int
}

// newUpgradeBatches deletes, in its first batch, the kinds clear: what an interrupted upgrade
// wrote goes first, since the older build may have written after it.
func (s *Store) newUpgradeBatches(clear ...byte) (*upgradeBatches, error) {
	u := &upgradeBatches{w: &Writer{db: s.db, batch: s.db.NewBatch()}}
	for _, prefix := range clear {
		lo, hi := prefixBounds(prefix)
		if err := u.w.batch.DeleteRange(lo, hi, nil); err != nil {
			u.close()
			return nil, err
		}
	}
	return u, nil
}

func (u *upgradeBatches) flush() error {
	if err := pebbleWrite(func() error { return u.w.batch.Commit(pebble.NoSync) }); err != nil {
		return err
	}
	u.w.batch.Reset()
	u.records = 0
	return nil
}

func (u *upgradeBatches) flushIfFull() error {
	if u.records < upgradeBatchRecordsMax {
		return nil
	}
	return u.flush()
}

func (u *upgradeBatches) close() { _ = u.w.batch.Close() }

// upgrade brings a store of an older format (formatsUpgradable) to formatVersion: it moves the
// postings, keyed by account before format 8, to the journal and index pages, and the index
// pages of formats 8 and 9 to generations (convertPages), then deletes the older records and
// sets the format in one synced batch. A crash before that batch leaves the older format with
// its records, and the next open moves them again, writing the same records. A read-only open
// of an older store that has postings or pages to move is refused: it cannot be read until
// they are moved.
func (s *Store) upgrade() error {
	if s.upgradeFrom == "" {
		return nil
	}
	lo, hi := prefixBounds(prefixPosting)
	has := func(lo, hi []byte) (bool, error) {
		found := false
		err := (&Reader{r: s.db}).scan(lo, hi, false, func([]byte, []byte) (bool, error) {
			found = true
			return false, nil
		})
		return found, err
	}
	postings, err := has(lo, hi)
	if err != nil {
		return err
	}
	plo, phi := prefixBounds(prefixPage)
	pages, err := has(plo, phi)
	if err != nil {
		return err
	}
	if s.readOnly {
		if postings || pages {
			return fmt.Errorf("%w: it has %q, whose postings and index pages this build reads once they are moved: "+
				"open it for writing once (start ledgerd on it) to move them", ErrFormat, s.upgradeFrom)
		}
		return nil
	}
	if postings {
		if err := s.moveToJournal(lo, hi); err != nil {
			return fmt.Errorf("storage: upgrade from %s: %w", s.upgradeFrom, err)
		}
	}
	if postings || pages {
		if err := s.convertPages(); err != nil {
			return fmt.Errorf("storage: upgrade from %s: %w", s.upgradeFrom, err)
		}
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	if err := b.DeleteRange(plo, phi, nil); err != nil {
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

// convertPages writes format 9's index pages (i account last, each account's together) as
// pages of generations (g shard gen account last): all of a shard's pages up to its paged
// mark as one generation at the mark. No k: every paged account has pages in that generation,
// the newest, where readers find its latest paged posting; the paging of the next generation
// writes the k of those quiet in it (from this one's pages, pagedAccounts). The
// pages of a generation being paged when the store closed (past the mark) are left out: the
// writer pages that generation again from its first account. upgrade deletes the `i` pages
// with the format's change.
func (s *Store) convertPages() error {
	marks := make([]uint64, s.shards)
	for shard := range s.shards {
		var key [pagedKeyLen]byte
		val, closer, err := s.db.Get(pagedKey(key[:0], shard))
		if errors.Is(err, pebble.ErrNotFound) {
			continue // nothing paged: no pages to move
		}
		if err != nil {
			return err
		}
		marks[shard], _, err = decodePaged(shard, val)
		_ = closer.Close()
		if err != nil {
			return err
		}
	}
	u, err := s.newUpgradeBatches(prefixGenPage, prefixLatest)
	if err != nil {
		return err
	}
	defer u.close()
	w := u.w
	var ts []uint64
	lo, hi := prefixBounds(prefixPage)
	err = (&Reader{r: s.db}).scan(lo, hi, false, func(k, val []byte) (bool, error) {
		var err error
		if ts, err = decodePage(ts[:0], k, val); err != nil {
			return false, err
		}
		a := be.Uint64(k[1:])
		shard := ledger.ShardOf(a, s.shards)
		if shard >= s.shards {
			return false, fmt.Errorf("index page %x: account %d is of no shard of %d", k, a, s.shards)
		}
		last := ts[len(ts)-1]
		if last > marks[shard] {
			return true, nil
		}
		w.set(genPageKey(w.key, shard, marks[shard], a, last), val)
		u.records++
		return true, u.flushIfFull()
	})
	if err != nil {
		return err
	}
	return u.flush()
}

// moveToJournal writes every posting of the older layout (lo..hi) to the journal, and index
// pages for all of them with each shard's paged mark at its clock.
func (s *Store) moveToJournal(lo, hi []byte) error {
	u, err := s.newUpgradeBatches(prefixJournal, prefixPage, prefixPaged)
	if err != nil {
		return err
	}
	defer u.close()
	w := u.w
	marks := make([]uint64, s.shards)
	var ts []uint64
	var account uint64
	page := func() {
		if len(ts) > 0 {
			w.set(pageKey(w.key, account, ts[len(ts)-1]), encodePage(w.val, ts))
			u.records++
			ts = ts[:0]
		}
	}
	v := &Reader{r: s.db}
	err = v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
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
		u.records++
		ts = append(ts, p.Timestamp)
		marks[shard] = max(marks[shard], p.Timestamp)
		return true, u.flushIfFull()
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
	return u.flush()
}

// sortJournalOrder sorts postings in the journal's key order (shard, timestamp, account), for
// one forward walk of an iterator.
func sortJournalOrder(ps []postingAt, shards uint32) {
	slices.SortFunc(ps, func(a, b postingAt) int {
		if sa, sb := ledger.ShardOf(a.account, shards), ledger.ShardOf(b.account, shards); sa != sb {
			return cmp.Compare(sa, sb)
		}
		if a.ts != b.ts {
			return cmp.Compare(a.ts, b.ts)
		}
		return cmp.Compare(a.account, b.account)
	})
}
