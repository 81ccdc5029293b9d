package storage

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/klauspost/compress/s2"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// The event stream's keys (see the package comment, "Event stream").
const (
	prefixEventLog   = 'e' // e log round       -> one commit's events
	prefixEventIndex = 'E' // E sequence        -> (log, round, events, time): a commit's first global sequence
	prefixLogIndexed = 'L' // L log             -> the log's last round that has its global sequences
)

const (
	eventLogKeyLen   = 1 + 2 + 8
	eventIndexKeyLen = 1 + 8
)

// PaymentLogBase is the first log id of the payment shards: ledger shard s writes log s,
// payment shard p log PaymentLogBase+p.
const PaymentLogBase = 0x8000

// LogRound names one commit's events in one log: the round (gapless per log, from 1), how
// many events it holds, and the time it was written (the store's log clock, one counter for
// every log, never below the writer's clock; it orders the rounds of different logs that a
// crash left without global sequences: see logClock).
type LogRound struct {
	Log    uint16
	Round  uint64
	Events uint32
	Time   uint64
}

// IndexEntry gives a round of a log its global sequences: First to First+Events-1.
type IndexEntry struct {
	First uint64
	LogRound
}

// End is the sequence after the entry's last.
func (e IndexEntry) End() uint64 { return e.First + uint64(e.Events) }

// OrderEvent is a payment order as a commit wrote it, and the indices of its exception records
// that the commit opened or changed (each an event after the order's).
type OrderEvent struct {
	Order      *payment.Order
	Exceptions []int
	// Exact: the log record says which of Exceptions the commit opened (a record of version
	// paymentLogFlagged or paymentLogFlaggedRaw); Opened[i] then tells whether it opened
	// Exceptions[i] (an index beyond the order's previous record count) or changed a record
	// the order had. Records of versions 1 and 2 do not say: Exact false, Opened nil.
	Exact  bool
	Opened []bool
}

// RoundEvents are one commit's events in stream order: its transfer records, then its
// postings, then its orders (each followed by its changed exception records).
type RoundEvents struct {
	Transfers []ledger.Transfer
	Postings  []ledger.Posting
	Orders    []OrderEvent
}

// Count is the number of events.
func (r *RoundEvents) Count() int {
	n := len(r.Transfers) + len(r.Postings)
	for i := range r.Orders {
		n += 1 + len(r.Orders[i].Exceptions)
	}
	return n
}

// EventCount is how many events a ledger round holds: one per transfer record written and one
// per posting.
func EventCount(fx *ledger.Effects) int { return len(fx.Transfers) + len(fx.Postings) }

func eventLogKey(dst []byte, log uint16, round uint64) []byte {
	dst = append(dst[:0], prefixEventLog)
	dst = be.AppendUint16(dst, log)
	return be.AppendUint64(dst, round)
}

func logIndexedKey(dst []byte, log uint16) []byte {
	dst = append(dst[:0], prefixLogIndexed)
	return be.AppendUint16(dst, log)
}

var eventsHorizonKey = []byte{prefixMeta, 'e', 'v', 'e', 'n', 't', 's', '-', 'h', 'o', 'r', 'i', 'z', 'o', 'n'}

// A ledger round's log record holds references, not copies: each transfer record the round
// wrote as (id, state, result), and each posting as (account, timestamp). Postings are never
// rewritten; a transfer record is rewritten only to change its state and result, which the
// reference keeps as they were. Values: version, time, transfers, postings, then the
// references. A transfer is its id as a zig-zag delta from the previous one, its state and
// its result. A posting of a transfer the round wrote, at that transfer's timestamp, on its
// debit or credit account (most postings) is one byte: the transfer's position as a delta
// from the previous such posting's, and the side; any other posting (a leg's, an expiry's) is
// a zero, its account and its timestamp (a zig-zag delta from the previous posting's). About 5 bytes a transfer, against
// some 45 for a copy; the live stream is served from memory, so only a consumer catching up
// reads them back.
const (
	postingRefOfTransfer = 1 << 0 // the posting is of transfer (previous + delta), ...
	postingRefCredit     = 1 << 1 // ... on its credit account (else its debit account)
)

func appendLedgerLog(dst []byte, fx *ledger.Effects, time uint64) []byte {
	dst = append(dst[:0], recordVersion)
	dst = av(dst, time)
	dst = av(dst, uint64(len(fx.Transfers)))
	dst = av(dst, uint64(len(fx.Postings)))
	var prev uint64
	for i := range fx.Transfers {
		t := &fx.Transfers[i]
		dst = av(dst, zigzag(t.ID-prev))
		dst = append(dst, byte(t.State), byte(t.Result))
		prev = t.ID
	}
	prev = 0
	j := 0 // the transfer the previous posting of a transfer named
	for i := range fx.Postings {
		p := &fx.Postings[i]
		if k, credit, ok := postingOf(fx.Transfers, j, p); ok {
			ref := uint64(k-j)<<2 | postingRefOfTransfer
			if credit {
				ref |= postingRefCredit
			}
			dst = av(dst, ref)
			j = k
		} else {
			dst = append(dst, 0) // postingRefOfTransfer clear
			dst = av(dst, p.Account)
			dst = av(dst, zigzag(p.Timestamp-prev))
		}
		prev = p.Timestamp
	}
	return dst
}

// postingOf finds the transfer of ts, from j on (a few places ahead at most), that p is a
// posting of: same id and timestamp, on its debit or credit account.
func postingOf(ts []ledger.Transfer, j int, p *ledger.Posting) (k int, credit, ok bool) {
	for k = j; k < len(ts) && k < j+postingRefLookAhead; k++ {
		t := &ts[k]
		if t.ID != p.TransferID || t.Timestamp != p.Timestamp {
			continue
		}
		switch p.Account {
		case t.DebitAccountID:
			return k, false, true
		case t.CreditAccountID:
			return k, true, true
		}
	}
	return 0, false, false
}

// postingRefLookAhead bounds postingOf's search.
const postingRefLookAhead = 4

func zigzag(d uint64) uint64   { return d<<1 ^ uint64(int64(d)>>63) }
func unzigzag(z uint64) uint64 { return z>>1 ^ -(z & 1) }

// A payment round's log record holds copies of its orders (orders are few and rewritten
// often). Its body: the orders, and per order its id, its record and its changed exception
// records, each written as its index k shifted left by one, the low bit set when the commit
// opened the record (k beyond the order's previous record count) and clear when it changed a
// record the order had. The record is paymentLogFlagged, the round's time, its event count,
// then the body compressed with S2 (a round's orders share most of their strings and the high
// bytes of their times: about a third of the bytes, measured on the payments bench, for some
// 2 ns a byte; every byte saved is saved again in the WAL, the memtable, the flush and each
// compaction); a body beyond paymentLogBodyMax is written uncompressed as
// paymentLogFlaggedRaw (the version, the time, the event count, the body).
//
// Earlier versions, still read: version 1 (recordVersion) held the time, then the body
// uncompressed; version 2 (paymentLogCompressed) is paymentLogFlagged's layout; in both a
// changed record is written as its bare index, saying not whether the commit opened it.
// Builds before version 3 refuse a record of version 3 or 4 as of an unknown version (their
// logHead and paymentLogBody), so no store format change is needed: such a build fails to
// open the store rather than misread it.
const (
	paymentLogCompressed = 2
	paymentLogFlagged    = 3
	paymentLogFlaggedRaw = 4
)

// paymentLogBodyMax bounds what a compressed payment log record may claim to expand to. A
// round's body larger than that (thousands of orders of the largest size) is written
// uncompressed (paymentLogFlaggedRaw), which reads with no bound but its own size: what the
// writer writes, the reader reads.
const paymentLogBodyMax = 64 << 20

// orderEntryMin is the fewest bytes an order takes in a payment log body (its id, its
// record's length, the record, which is some thirty fields of a byte or more, and its
// exception count): an order count beyond the body's length over it is malformed, and is not
// allocated for.
const orderEntryMin = 32

// appendPaymentBody encodes a round's orders as a payment log record's body. at[i] is where
// order i's record lies in the result (the order's own record is written from there, so each
// order is encoded once).
func appendPaymentBody(dst []byte, orders []OrderWrite, changed [][]int, scratch []byte, at [][2]int) ([]byte, []byte, [][2]int) {
	dst = av(dst[:0], uint64(len(orders)))
	at = at[:0]
	for i, ow := range orders {
		dst = av(dst, ow.Order.ID)
		scratch = encodeOrder(scratch, ow.Order)
		dst = av(dst, uint64(len(scratch)))
		at = append(at, [2]int{len(dst), len(dst) + len(scratch)})
		dst = append(dst, scratch...)
		dst = av(dst, uint64(len(changed[i])))
		for _, k := range changed[i] {
			dst = av(dst, uint64(k))
		}
	}
	return dst, scratch, at
}

// appendPaymentLog makes a payment log record of a round's body (its changed exception records
// flagged): paymentLogFlagged, or paymentLogFlaggedRaw when the body is beyond
// paymentLogBodyMax.
func appendPaymentLog(dst []byte, time uint64, events int, body []byte) []byte {
	if len(body) > paymentLogBodyMax {
		return appendPaymentLogAs(dst, paymentLogFlaggedRaw, time, events, body)
	}
	return appendPaymentLogAs(dst, paymentLogFlagged, time, events, body)
}

// appendPaymentLogAs makes a payment log record of the given version (the older ones are
// written by tests only).
func appendPaymentLogAs(dst []byte, version byte, time uint64, events int, body []byte) []byte {
	dst = append(dst[:0], version)
	dst = av(dst, time)
	switch version {
	case recordVersion:
		return append(dst, body...)
	case paymentLogFlaggedRaw:
		dst = av(dst, uint64(events))
		return append(dst, body...)
	}
	dst = av(dst, uint64(events))
	head := len(dst)
	m := s2.MaxEncodedLen(len(body))
	dst = slices.Grow(dst, m)
	z := s2.Encode(dst[head:head+m], body)
	return dst[:head+len(z)]
}

// paymentLogBody is a payment log record's time, its event count (0 in a version 1 record,
// which does not hold it), its body, and whether the body's changed exception records are
// flagged (versions 3 and 4).
func paymentLogBody(key, v []byte) (time uint64, events uint64, body []byte, flagged bool, err error) {
	if len(v) == 0 {
		return 0, 0, nil, false, fmt.Errorf("storage: event log record %x: empty", key)
	}
	r := reader{b: v[1:]}
	switch v[0] {
	case recordVersion:
		time = r.uvarint()
		return time, 0, r.b, false, nil
	case paymentLogFlaggedRaw:
		time, events = r.uvarint(), r.uvarint()
		if r.bad || events == 0 {
			return 0, 0, nil, false, fmt.Errorf("storage: event log record %x: malformed", key)
		}
		return time, events, r.b, true, nil
	case paymentLogCompressed, paymentLogFlagged:
		time, events = r.uvarint(), r.uvarint()
		n, derr := s2.DecodedLen(r.b)
		if r.bad || derr != nil || n > paymentLogBodyMax || events == 0 {
			return 0, 0, nil, false, fmt.Errorf("storage: event log record %x: malformed", key)
		}
		body, derr = s2.Decode(make([]byte, n), r.b)
		if derr != nil {
			return 0, 0, nil, false, fmt.Errorf("storage: event log record %x: malformed: %w", key, derr)
		}
		return time, events, body, v[0] == paymentLogFlagged, nil
	}
	return 0, 0, nil, false, fmt.Errorf("storage: event log record %x: unknown version", key)
}

func encodeIndexEntry(dst []byte, e IndexEntry) []byte {
	dst = append(dst[:0], recordVersion)
	dst = be.AppendUint16(dst, e.Log)
	dst = av(dst, e.Round)
	dst = av(dst, uint64(e.Events))
	return av(dst, e.Time)
}

func decodeIndexEntry(key, v []byte) (IndexEntry, error) {
	if len(key) != eventIndexKeyLen || len(v) < 3 {
		return IndexEntry{}, fmt.Errorf("storage: event index %x: bad length", key)
	}
	r := reader{b: v}
	if err := r.version("event index", key); err != nil {
		return IndexEntry{}, err
	}
	e := IndexEntry{First: be.Uint64(key[1:])}
	e.Log = be.Uint16(r.b)
	r.b = r.b[2:]
	e.Round, e.Events, e.Time = r.uvarint(), r.uint32(), r.uvarint()
	if e.First == 0 || e.Round == 0 || e.Events == 0 {
		r.bad = true
	}
	return e, r.done("event index", key)
}

// logHead reads a log record's time and event count.
func logHead(key, v []byte) (LogRound, error) {
	if len(key) != eventLogKeyLen {
		return LogRound{}, fmt.Errorf("storage: event log %x: bad key", key)
	}
	lr := LogRound{Log: be.Uint16(key[1:]), Round: be.Uint64(key[3:])}
	var n uint64
	r := reader{b: v}
	if len(v) > 0 && lr.Log >= PaymentLogBase &&
		(v[0] == paymentLogCompressed || v[0] == paymentLogFlagged || v[0] == paymentLogFlaggedRaw) {
		r.b = v[1:]
		lr.Time, n = r.uvarint(), r.uvarint()
	} else if err := r.version("event log", key); err != nil {
		return LogRound{}, err
	} else if lr.Time = r.uvarint(); lr.Log < PaymentLogBase {
		n = r.uvarint() + r.uvarint()
	} else {
		orders := r.uvarint()
		for i := uint64(0); i < orders && !r.bad; i++ {
			r.uvarint()
			r.skip(r.uvarint())
			ex := r.uvarint()
			n += 1 + ex
			for j := uint64(0); j < ex && !r.bad; j++ {
				r.uvarint()
			}
		}
	}
	if r.bad || n == 0 || n > 1<<31 {
		return LogRound{}, fmt.Errorf("storage: event log %x: malformed", key)
	}
	lr.Events = uint32(n)
	return lr, nil
}

func (r *reader) skip(n uint64) {
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return
	}
	r.b = r.b[n:]
}

// logCursor is a writer's place in its log.
type logCursor struct {
	log    uint16
	round  uint64 // the last round written
	clock  *logClock
	loaded bool
	last   LogRound // what the last commit wrote (Events 0: nothing)
}

// logClock stamps every log round of the store (LogRound.Time) from one counter: each stamp
// is the larger of the previous one plus 1 and the writer's clock, taken as the round's
// batch is built. A round whose commit started after another's commit returned (a split
// transfer's credit round after its debit round; any round caused by another) therefore has
// the larger time, whatever the shards' own clocks say, and the rounds a crash left without
// sequences are numbered at start in that order. It starts from the largest time stored.
type logClock struct {
	t    atomic.Uint64
	once sync.Once
	err  error
}

// init reads the largest time stored, once, before the first stamp: the last index entry's
// and each log's last round's.
func (c *logClock) init(db *pebble.DB) error {
	c.once.Do(func() { c.err = c.load(db) })
	return c.err
}

func (c *logClock) load(db *pebble.DB) error {
	var t uint64
	lo, hi := prefixBounds(prefixEventIndex)
	if err := (&Reader{r: db}).scan(lo, hi, true, func(k, val []byte) (bool, error) {
		e, err := decodeIndexEntry(k, val)
		t = max(t, e.Time)
		return false, err
	}); err != nil {
		return err
	}
	lo, hi = prefixBounds(prefixEventLog)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: event logs: %w", err)
	}
	// Each log's last round: seek to the end of each log in turn.
	for ok := it.First(); ok; {
		if len(it.Key()) != eventLogKeyLen {
			_ = it.Close()
			return fmt.Errorf("storage: event log %x: bad key", it.Key())
		}
		log := be.Uint16(it.Key()[1:])
		end := hi
		if log != 0xffff {
			end = eventLogKey(nil, log+1, 0)
		}
		if it.SeekLT(end) {
			lr, err := logHead(it.Key(), it.Value())
			if err != nil {
				_ = it.Close()
				return err
			}
			t = max(t, lr.Time)
		}
		if log == 0xffff {
			break
		}
		ok = it.SeekGE(end)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("storage: event logs: %w", err)
	}
	c.t.Store(t)
	return nil
}

// next stamps a round: the larger of the previous stamp plus 1 and now.
func (c *logClock) next(now uint64) uint64 {
	for {
		prev := c.t.Load()
		t := max(prev+1, now)
		if c.t.CompareAndSwap(prev, t) {
			return t
		}
	}
}

// load finds the log's last round in the store, once.
func (c *logCursor) load(db *pebble.DB) error {
	if c.loaded {
		return nil
	}
	if err := c.clock.init(db); err != nil {
		return err
	}
	lo := eventLogKey(nil, c.log, 0)
	hi := eventLogKey(nil, c.log+1, 0)
	if c.log == 0xffff {
		hi = []byte{prefixEventLog + 1}
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: event log %d: %w", c.log, err)
	}
	if it.Last() {
		lr, err := logHead(it.Key(), it.Value())
		if err != nil {
			_ = it.Close()
			return err
		}
		c.round = lr.Round
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("storage: event log %d: %w", c.log, err)
	}
	// Retention deletes indexed rounds, and may delete every round of a log that wrote
	// nothing for a while; its watermark (L <log>) stays. Rounds go on after it: a round
	// numbered at or below the watermark would be taken for indexed at the next start, and
	// a crash before its indexing would lose it from the stream with no gap.
	if _, err := (&Reader{r: db}).get(logIndexedKey(nil, c.log), func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: log watermark of %d: malformed", c.log)
		}
		c.round = max(c.round, be.Uint64(val))
		return nil
	}); err != nil {
		return err
	}
	c.loaded = true
	return nil
}

// next names the round a commit of n events writes, stamped by the store's log clock (now:
// the writer's clock).
func (c *logCursor) next(n int, now uint64) LogRound {
	return LogRound{Log: c.log, Round: c.round + 1, Events: uint32(n), Time: c.clock.next(now)}
}

// reserve records that a prepared commit writes lr (the next commit's round comes after it).
func (c *logCursor) reserve(lr LogRound) {
	if lr.Events > 0 {
		c.round = lr.Round
	}
}

// done records that lr was committed.
func (c *logCursor) done(lr LogRound) { c.last = lr }

// LastRound is what the writer's last successful commit wrote to its event log (Events 0:
// the commit had no events, and used no round number).
func (w *Writer) LastRound() LogRound { return w.log.last }

// LastRound is what the writer's last successful commit wrote to its event log.
func (w *OrderWriter) LastRound() LogRound { return w.w.log.last }

// EventsState is where the event stream stands in the store: the next global sequence, the
// oldest one kept, and the rounds that are durable in their logs but have no global
// sequences yet (a crash came between their commit and their indexing), in the order they
// must get them.
type EventsState struct {
	Next, Horizon uint64
	Unindexed     []LogRound
}

// EventsState reads where the event stream stands. Call it before any writer commits.
func (s *Store) EventsState() (EventsState, error) {
	st := EventsState{Next: 1, Horizon: 1}
	v := s.Live()
	if _, err := v.get(eventsHorizonKey, func(val []byte) error {
		if len(val) != 8 || be.Uint64(val) == 0 {
			return fmt.Errorf("storage: events horizon %x: malformed", val)
		}
		st.Horizon = be.Uint64(val)
		return nil
	}); err != nil {
		return st, err
	}
	st.Next = st.Horizon
	lo, hi := prefixBounds(prefixEventIndex)
	if err := v.scan(lo, hi, true, func(k, val []byte) (bool, error) {
		e, err := decodeIndexEntry(k, val)
		st.Next = e.End()
		return false, err
	}); err != nil {
		return st, err
	}
	indexed := map[uint16]uint64{}
	lo, hi = prefixBounds(prefixLogIndexed)
	if err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		if len(k) != 3 || len(val) != 8 {
			return false, fmt.Errorf("storage: log watermark %x: malformed", k)
		}
		indexed[be.Uint16(k[1:])] = be.Uint64(val)
		return true, nil
	}); err != nil {
		return st, err
	}
	lo, hi = prefixBounds(prefixEventLog)
	err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		lr, err := logHead(k, val)
		if err != nil || lr.Round <= indexed[lr.Log] {
			return err == nil, err
		}
		st.Unindexed = append(st.Unindexed, lr)
		return true, nil
	})
	// Rounds in the order of their times (one store-wide counter, taken as each round's
	// batch is built, so each log keeps its own order): a split transfer's credit round,
	// whose commit started after its debit round's returned, comes after it.
	slices.SortStableFunc(st.Unindexed, func(a, b LogRound) int {
		if a.Time != b.Time {
			return cmp.Compare(a.Time, b.Time)
		}
		if a.Log != b.Log {
			return int(a.Log) - int(b.Log)
		}
		return cmp.Compare(a.Round, b.Round)
	})
	return st, err
}

// IndexWriter writes the event stream's index: the sequencer's, one goroutine owns it.
type IndexWriter struct {
	db       *pebble.DB
	batch    *pebble.Batch
	key, val []byte
	logs     map[uint16]uint64
}

// IndexWriter returns the writer of the event index.
func (s *Store) IndexWriter() *IndexWriter {
	return &IndexWriter{db: s.db, batch: s.db.NewBatch(), logs: map[uint16]uint64{}}
}

// Commit writes index entries (consecutive sequences, each log's rounds in order) as one
// batch, with each log's watermark, not synced: the next synced commit of any writer that
// starts after it returns, or Store.SyncWAL, makes it durable.
func (w *IndexWriter) Commit(entries []IndexEntry) error {
	clear(w.logs)
	for _, e := range entries {
		w.key = idKey(w.key, prefixEventIndex, e.First)
		w.val = encodeIndexEntry(w.val, e)
		if err := w.batch.Set(w.key, w.val, nil); err != nil {
			panic(err)
		}
		w.logs[e.Log] = e.Round
	}
	for log, round := range w.logs {
		w.key = logIndexedKey(w.key, log)
		if err := w.batch.Set(w.key, be.AppendUint64(w.val[:0], round), nil); err != nil {
			panic(err)
		}
	}
	err := pebbleWrite(func() error { return w.batch.Commit(pebble.NoSync) })
	w.batch.Reset()
	if err != nil {
		return fmt.Errorf("storage: commit event index: %w", err)
	}
	return nil
}

// SyncWAL makes everything written so far durable (one synced WAL record).
func (s *Store) SyncWAL() error {
	return pebbleWrite(func() error { return s.db.LogData(nil, pebble.Sync) })
}

// Trim deletes the events below horizon, which must be the first sequence of an index
// entry: the index entries before it and their log records. Not synced: a trim lost in a
// crash is done again.
func (w *IndexWriter) Trim(horizon uint64) error {
	lo, _ := prefixBounds(prefixEventIndex)
	hi := idKey(nil, prefixEventIndex, horizon)
	last := map[uint16]uint64{}
	v := &Reader{r: w.db}
	found := false
	if err := v.scan(hi, idKey(nil, prefixEventIndex, horizon+1), false, func(k, _ []byte) (bool, error) {
		found = true
		return false, nil
	}); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("storage: trim events: no index entry starts at %d", horizon)
	}
	if err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		e, err := decodeIndexEntry(k, val)
		last[e.Log] = max(last[e.Log], e.Round)
		return err == nil, err
	}); err != nil {
		return err
	}
	b := w.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, hi, nil); err != nil {
		return err
	}
	for log, round := range last {
		if err := b.DeleteRange(eventLogKey(nil, log, 0), eventLogKey(nil, log, round+1), nil); err != nil {
			return err
		}
	}
	if err := b.Set(eventsHorizonKey, be.AppendUint64(nil, horizon), nil); err != nil {
		return err
	}
	return pebbleWrite(func() error { return b.Commit(pebble.NoSync) })
}

// Close releases the writer's batch.
func (w *IndexWriter) Close() error { return w.batch.Close() }

// ErrEventsTrimmed: the events asked for are below the retention horizon.
var ErrEventsTrimmed = errors.New("storage: events trimmed")

// EventEntries calls fn for the index entries from the one holding sequence from on, in
// order, until fn says stop. An entry holding from that is gone (trimmed) is
// ErrEventsTrimmed.
func (v *Reader) EventEntries(from uint64, fn func(IndexEntry) (bool, error)) error {
	lo, hi := prefixBounds(prefixEventIndex)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: iterate: %w", err)
	}
	defer it.Close()
	ok := it.SeekLT(idKey(nil, prefixEventIndex, from+1))
	if !ok {
		if err := it.Error(); err != nil {
			return err
		}
		return ErrEventsTrimmed
	}
	first := true
	for ; ok; ok = it.Next() {
		e, err := decodeIndexEntry(it.Key(), it.Value())
		if err != nil {
			return err
		}
		if first && e.End() <= from {
			if it.Next() {
				// from is in no entry: the store has none before the next one's start.
				return ErrEventsTrimmed
			}
			return it.Error()
		}
		first = false
		more, err := fn(e)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// RoundEvents reads the events of a logged round. The transfers are read as they stand with
// the state and result the round wrote.
func (v *Reader) RoundEvents(lr LogRound) (*RoundEvents, error) {
	key := eventLogKey(nil, lr.Log, lr.Round)
	var out *RoundEvents
	found, err := v.get(key, func(val []byte) (err error) {
		if lr.Log < PaymentLogBase {
			out, err = v.ledgerRound(key, val)
		} else {
			out, err = paymentRound(key, val)
		}
		return err
	})
	if err == nil && !found {
		err = fmt.Errorf("%w: log %d round %d", ErrEventsTrimmed, lr.Log, lr.Round)
	}
	if err == nil && out.Count() != int(lr.Events) {
		err = fmt.Errorf("storage: event log %x holds %d events, its index says %d", key, out.Count(), lr.Events)
	}
	return out, err
}

func (v *Reader) ledgerRound(key, val []byte) (*RoundEvents, error) {
	r := reader{b: val}
	if err := r.version("event log", key); err != nil {
		return nil, err
	}
	r.uvarint()
	nt, np := r.uvarint(), r.uvarint()
	if r.bad || nt+np > 4*ledger.BatchEventsMax*ledger.ShardsMax {
		return nil, fmt.Errorf("storage: event log %x: malformed", key)
	}
	out := &RoundEvents{Transfers: make([]ledger.Transfer, nt), Postings: make([]ledger.Posting, np)}
	ids := make([]uint64, nt)
	var prev uint64
	for i := range out.Transfers {
		prev += unzigzag(r.uvarint())
		ids[i] = prev
		out.Transfers[i] = ledger.Transfer{ID: prev, State: ledger.TransferState(r.rawByte()), Result: ledger.TransferResult(r.rawByte())}
	}
	stored := make(map[uint64]ledger.Transfer, nt)
	if err := v.Transfers(slices.Clone(ids), func(t ledger.Transfer) { stored[t.ID] = t }); err != nil {
		return nil, err
	}
	for i := range out.Transfers {
		t := &out.Transfers[i]
		s, ok := stored[t.ID]
		if !ok {
			return nil, fmt.Errorf("storage: event log %x names transfer %d, which is not stored", key, t.ID)
		}
		s.State, s.Result = t.State, t.Result
		*t = s
	}
	prev = 0
	j := 0
	keys := make([]postingAt, len(out.Postings))
	for i := range out.Postings {
		ref := r.uvarint()
		var account, ts uint64
		if ref&postingRefOfTransfer != 0 {
			j += int(ref >> 2)
			if j >= len(out.Transfers) {
				return nil, fmt.Errorf("storage: event log %x: posting %d names transfer %d of %d", key, i, j, nt)
			}
			t := &out.Transfers[j]
			account, ts = t.DebitAccountID, t.Timestamp
			if ref&postingRefCredit != 0 {
				account = t.CreditAccountID
			}
		} else {
			if ref != 0 {
				return nil, fmt.Errorf("storage: event log %x: malformed posting %d", key, i)
			}
			account = r.uvarint()
			ts = prev + unzigzag(r.uvarint())
		}
		prev = ts
		keys[i] = postingAt{account: account, ts: ts, i: i}
	}
	if err := r.done("event log", key); err != nil {
		return nil, err
	}
	if err := v.postingsAt(keys, out.Postings); err != nil {
		return nil, fmt.Errorf("storage: event log %x: %w", key, err)
	}
	return out, nil
}

// postingAt names a posting to read, and where it goes.
type postingAt struct {
	account, ts uint64
	i           int
}

// postingsAt reads postings into out, in key order through one iterator: a point read each
// (a Get makes the iterators of every level anew) cost about five times as much.
func (v *Reader) postingsAt(keys []postingAt, out []ledger.Posting) error {
	if len(keys) == 0 {
		return nil
	}
	shards := v.s.shards
	sortJournalOrder(keys, shards)
	lo, hi := prefixBounds(prefixJournal)
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: iterate: %w", err)
	}
	var pk [journalKeyLen]byte
	for _, at := range keys {
		p, found, err := seekPosting(it, false, &pk, ledger.ShardOf(at.account, shards), at.ts, at.account)
		if err == nil && !found {
			err = fmt.Errorf("the posting of account %d at %d is not stored", at.account, at.ts)
		}
		if err != nil {
			_ = it.Close()
			return err
		}
		out[at.i] = p
	}
	return it.Close()
}

func (r *reader) rawByte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func paymentRound(key, val []byte) (*RoundEvents, error) {
	_, events, body, flagged, err := paymentLogBody(key, val)
	if err != nil {
		return nil, err
	}
	r := reader{b: body}
	n := r.uvarint()
	if r.bad || n > uint64(len(body))/orderEntryMin {
		return nil, fmt.Errorf("storage: event log %x: malformed", key)
	}
	out := &RoundEvents{Orders: make([]OrderEvent, n)}
	for i := range out.Orders {
		id := r.uvarint()
		size := r.uvarint()
		if r.bad || size > uint64(len(r.b)) {
			return nil, fmt.Errorf("storage: event log %x: malformed", key)
		}
		o, err := decodeOrder(idKey(nil, prefixOrder, id), r.b[:size])
		if err != nil {
			return nil, err
		}
		r.b = r.b[size:]
		ex := r.uvarint()
		if ex > payment.ExceptionsMax {
			r.bad = true
			ex = 0
		}
		oe := OrderEvent{Order: o, Exact: flagged}
		for range ex {
			k := r.uvarint()
			if flagged {
				oe.Opened = append(oe.Opened, k&1 == 1)
				k >>= 1
			}
			if k >= uint64(len(o.Exceptions)) {
				r.bad = true
			}
			oe.Exceptions = append(oe.Exceptions, int(k))
		}
		out.Orders[i] = oe
	}
	if events != 0 && uint64(out.Count()) != events && !r.bad {
		return nil, fmt.Errorf("storage: event log %x holds %d events, its head says %d", key, out.Count(), events)
	}
	return out, r.done("event log", key)
}

// changedExceptions lists, per order, the exception records that differ from the order's
// stored record (all of a new order's), each as its index k shifted left by one, the low bit
// set when the commit opens the record (k beyond the stored record's count).
func changedExceptions(db pebble.Reader, orders []OrderWrite, dst [][]int) ([][]int, error) {
	dst = dst[:0]
	v := &Reader{r: db}
	for _, ow := range orders {
		o := ow.Order
		var ks []int
		if len(o.Exceptions) > 0 {
			var prev *payment.Order
			if !ow.New {
				var err error
				if prev, _, err = v.Order(o.ID); err != nil {
					return nil, err
				}
			}
			for k := range o.Exceptions {
				switch {
				case prev == nil || k >= len(prev.Exceptions):
					ks = append(ks, k<<1|1)
				case !sameException(&prev.Exceptions[k], &o.Exceptions[k]):
					ks = append(ks, k<<1)
				}
			}
		}
		dst = append(dst, ks)
	}
	return dst, nil
}

// sameException compares what a consumer sees of an exception record (not the timing of
// its refund's queries).
func sameException(a, b *payment.Exception) bool {
	return a.Kind == b.Kind && a.Step == b.Step && a.Txn == b.Txn && a.Amount == b.Amount && a.Note == b.Note &&
		a.Refund == b.Refund && a.Created == b.Created && a.Updated == b.Updated
}

// verifyEvents checks the event stream's keys: each log's rounds are gapless (from 1, or from
// where retention trimmed it), the index entries are consecutive from the horizon, each names
// a logged round with its event count, each log's rounds are indexed in order with no gap up
// to its watermark, and every round past a watermark is only waiting for its sequences.
func verifyEvents(v *Reader, problems []string) ([]string, error) {
	horizon := uint64(1)
	if _, err := v.get(eventsHorizonKey, func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: events horizon %x: malformed", val)
		}
		horizon = be.Uint64(val)
		return nil
	}); err != nil {
		return problems, err
	}
	logged := map[uint16]map[uint64]uint32{} // log -> round -> events
	first, last := map[uint16]uint64{}, map[uint16]uint64{}
	lo, hi := prefixBounds(prefixEventLog)
	if err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		lr, err := logHead(k, val)
		if err != nil {
			problems = append(problems, err.Error())
			return true, nil
		}
		if logged[lr.Log] == nil {
			logged[lr.Log], first[lr.Log] = map[uint64]uint32{}, lr.Round
			if lr.Round != 1 && horizon == 1 {
				problems = append(problems, fmt.Sprintf("event log %d starts at round %d, nothing trimmed", lr.Log, lr.Round))
			}
		} else if lr.Round != last[lr.Log]+1 {
			problems = append(problems, fmt.Sprintf("event log %d: round %d after %d", lr.Log, lr.Round, last[lr.Log]))
		}
		logged[lr.Log][lr.Round], last[lr.Log] = lr.Events, lr.Round
		return true, nil
	}); err != nil {
		return problems, err
	}
	indexed := map[uint16]uint64{}
	next := horizon
	lo, hi = prefixBounds(prefixEventIndex)
	if err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		e, err := decodeIndexEntry(k, val)
		switch {
		case err != nil:
			problems = append(problems, err.Error())
			return true, nil
		case e.First != next:
			problems = append(problems, fmt.Sprintf("event index: entry at %d, expected %d", e.First, next))
		case indexed[e.Log] != 0 && e.Round != indexed[e.Log]+1:
			problems = append(problems, fmt.Sprintf("event index: log %d round %d after round %d", e.Log, e.Round, indexed[e.Log]))
		case logged[e.Log][e.Round] != e.Events:
			problems = append(problems, fmt.Sprintf("event index: log %d round %d has %d events, the index says %d",
				e.Log, e.Round, logged[e.Log][e.Round], e.Events))
		}
		next, indexed[e.Log] = e.End(), e.Round
		return true, nil
	}); err != nil {
		return problems, err
	}
	lo, hi = prefixBounds(prefixLogIndexed)
	err := v.scan(lo, hi, false, func(k, val []byte) (bool, error) {
		if len(k) != 3 || len(val) != 8 {
			problems = append(problems, fmt.Sprintf("log watermark %x: malformed", k))
			return true, nil
		}
		log, mark := be.Uint16(k[1:]), be.Uint64(val)
		if got, ok := indexed[log]; ok && got != mark {
			problems = append(problems, fmt.Sprintf("event log %d: indexed to round %d, its watermark says %d", log, got, mark))
		}
		// A log that retention emptied has no records and keeps its watermark (its writer
		// numbers its next round after it).
		if mark > last[log] && (horizon == 1 || logged[log] != nil) {
			problems = append(problems, fmt.Sprintf("event log %d: watermark %d past its last round %d", log, mark, last[log]))
		}
		return true, nil
	})
	return problems, err
}
