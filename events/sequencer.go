// Package events is the ledger's event stream (change data capture): every committed
// posting, transfer state change, payment order change and exception, in commit order, each
// with a global sequence number that has no gaps.
//
// Each writer of the store (a ledger shard's committer, a payment shard's) writes its round's
// events into the round's own batch, as one record of its log (storage: `e <log> <round>`,
// gapless per log), so they are durable with the round at no extra fsync. After the commit
// returns, the committer hands the round (log, round, event count, and while anyone follows
// the stream its events, which a ledger shard's committer encodes for the wire as it hands
// them: CommittedLedger) to the Sequencer, before anything of the round is
// answered or sent on. The sequencer's goroutine takes what has arrived, gives each round the
// next global sequences and writes them as index entries (`E <first sequence>`) in one batch,
// not synced; it shows them to followers once a later synced commit of any writer (see
// Begin), or its own sync when none comes, made them durable: an event is streamed once both
// it and its sequence are durable, so a sequence never names two events, across crashes too. After a
// crash, Start indexes the rounds that are in their logs but not in the index (by their
// time, each log in its own order) before any writer commits again.
//
// Followers (gRPC subscribers, the NATS publisher) read from memory while they keep up (a
// ring of the newest events, at most RingEventsMax) and from the store otherwise (the index,
// then the logs), so a slow consumer costs the server a bounded amount of memory and never
// holds the writers back. Retention trims the oldest events (by count) below a horizon; a
// follower asking for a sequence below it gets ErrTrimmed.
package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// Limits of the stream (units last).
const (
	// InboxRoundsMax is how many committed rounds may wait for their sequences; a committer
	// that finds the inbox full waits (it cannot drop a round, and the wait is short: the
	// sequencer writes one small batch per turn).
	InboxRoundsMax = 1024
	// IndexBatchRoundsMax is how many rounds one index batch numbers at most.
	IndexBatchRoundsMax = 1024
	// RingEventsMax is how many of the newest events are kept in memory for followers that
	// keep up (3 s of the bench's peak rate); older ones are read from the store, several
	// times slower (point reads of the postings). With 512k, a subscriber starved of CPU for
	// under 2 s on the loaded 2-core machine fell out of it in 2 of 5 runs and caught up only
	// after the load ended. A ledger round's events are kept encoded for the wire (about 50
	// bytes an event with its offset on the bench: some 50 MB), a payment round's as structs.
	RingEventsMax = 1 << 20
	// RingBytesMax bounds the ring by bytes too (whichever bound is reached first): biz ids
	// and large values make the events of a ledger round larger (up to about 250 bytes each,
	// biz ids being at most ledger.BizIDBytesMax). A payment round counts
	// ringOrderEventBytes an event (an estimate: its orders are kept as structs).
	RingBytesMax = 128 << 20
	// ringOrderEventBytes is what an event of a payment round counts against RingBytesMax.
	ringOrderEventBytes = 1024
	// BatchEventsMax is how many events a follower is handed at once (one gRPC message or
	// one NATS message); batches never span two commits' index entries and start at the
	// entry's first sequence plus a multiple of it, so they are the same after a restart.
	BatchEventsMax = 4096
	// StoreReadEventsMax is how many events a follower reads from the store at a time.
	StoreReadEventsMax = 16 * 1024
	// FollowersMax is how many followers the stream serves at once: with RingBytesMax and
	// StoreReadEventsMax, what bounds the stream's memory (at most 128 MiB of ring, shared,
	// plus a few MB a follower).
	FollowersMax = 32
	// ReservedFollowersMax is how many reserved followers (FollowOptions.Reserved: the NATS
	// publisher and the reconciliation runner, nrtrecon) are served at once, beside
	// FollowersMax.
	ReservedFollowersMax = 2
	// RetainEventsDefault is how many of the newest events retention keeps by default.
	RetainEventsDefault = 100_000_000
	// retentionInterval is how often retention runs.
	retentionInterval = time.Second
	// syncDelayMax is how long index batches wait for a writer's synced commit to make them
	// durable before the sequencer syncs the WAL itself (the store is idle).
	syncDelayMax = 2 * time.Millisecond
)

// ErrTrimmed: a follower asked for events retention deleted. TrimmedError says the oldest one
// kept.
var ErrTrimmed = errors.New("events: trimmed by retention")

// ErrTooManyFollowers: FollowersMax followers (or ReservedFollowersMax reserved ones) are
// already served.
var ErrTooManyFollowers = errors.New("events: too many followers")

// ErrStopped: the sequencer stopped.
var ErrStopped = errors.New("events: stopped")

// TrimmedError is ErrTrimmed with the oldest sequence still kept.
type TrimmedError struct{ Asked, Oldest uint64 }

func (e *TrimmedError) Error() string {
	return fmt.Sprintf("events: sequence %d is trimmed by retention; the oldest kept is %d", e.Asked, e.Oldest)
}

func (e *TrimmedError) Unwrap() error { return ErrTrimmed }

// Event is one event of the stream: exactly one of Transfer, Posting and Order is set; an
// exception event has Order and Exception >= 0 (the record's index in Order.Exceptions).
// Its pointers are shared: read, never change.
//
// Exact (an order event and its exception events): the commit's log record says which
// exception records the commit opened; Opened (an exception event, when Exact): the commit
// opened the record (the order's previous version had fewer), else it changed one the order
// had. Commits logged before the records said so (payment log versions 1 and 2) are not
// Exact. Neither is carried over the wire (api's event encoding): they are for in-process
// consumers (the reconciliation runner).
type Event struct {
	Seq       uint64
	Transfer  *ledger.Transfer
	Posting   *ledger.Posting
	Order     *payment.Order
	Exception int
	Exact     bool
	Opened    bool
}

// Config configures a Sequencer.
type Config struct {
	// RetainEvents is how many of the newest events are kept (at least; retention deletes
	// whole commits). 0: all.
	RetainEvents uint64
	// Fatal is called when the index cannot be written: the process must stop (the rounds
	// are durable in their logs and are indexed on restart).
	Fatal func(error)
	// HoldRetention: retention keeps every event from the start until a publisher takes over
	// the hold (StartPublisher adopts StartHold): a restart while NATS is down must not trim,
	// before the publisher has started, what NATS never acknowledged.
	HoldRetention bool
}

// Stats are the stream's figures, read by the metrics adapter.
type Stats struct {
	Last         atomic.Uint64 // the last sequence durable and streamed
	Horizon      atomic.Uint64 // the oldest sequence kept
	Followers    atomic.Int64
	IndexBatches atomic.Uint64
	StoreReads   atomic.Uint64 // batches followers read from the store (behind the ring)
	RingEvents   atomic.Int64  // events in the ring
	RingBytes    atomic.Int64  // what the ring holds, in bytes (RingBytesMax)
	Trims        atomic.Uint64
	// RetentionHeld is how many events beyond RetainEvents retention kept at its last run
	// because a RetentionHold (the NATS publisher's position) asked it to.
	RetentionHeld atomic.Uint64
}

type round struct {
	lr   storage.LogRound
	ev   *storage.RoundEvents // nil: not captured, or encoded (w)
	w    *wireRound           // a captured ledger round, encoded by its committer (numbered by index)
	mark uint64               // Begin's answer before the round's commit started
}

// captured reports whether the round's events are at hand.
func (r *round) captured() bool { return r.ev != nil || r.w != nil }

// pending is an index batch written and not yet known durable.
type pending struct {
	gen     uint64
	entries []storage.IndexEntry
	rounds  []round
}

// chunk is an index entry with its events: encoded (w: a ledger round in the ring) or as
// structs (ev: a payment round, or one read from the store).
type chunk struct {
	storage.IndexEntry
	ev *storage.RoundEvents
	w  *wireRound
}

// size is what the chunk costs the ring, in bytes.
func (c *chunk) size() int {
	if c.w != nil {
		return c.w.size()
	}
	return int(c.Events) * ringOrderEventBytes
}

// Sequencer gives committed rounds their global sequences and serves them to followers.
type Sequencer struct {
	cfg   Config
	store *storage.Store
	w     *storage.IndexWriter
	in    chan round
	quit  chan struct{}
	done  chan struct{}
	stop  sync.Once
	// end is closed by EndFollowers: followers end, the sequencer goes on numbering.
	end     chan struct{}
	endOnce sync.Once
	next    uint64 // the sequencer goroutine's: the next sequence to give

	mu     sync.RWMutex
	last   uint64        // the last sequence durable (indexed)
	notify chan struct{} // closed when last moves
	ring   []chunk       // the newest captured entries, contiguous, ending at last
	ringN  int           // events in ring
	ringB  int           // bytes in ring (chunk.size)
	// ringEventsMax and ringBytesMax are RingEventsMax and RingBytesMax (tests set others).
	ringEventsMax, ringBytesMax int

	capturing atomic.Int32 // followers: while any, committers hand their events too
	// written counts the index batches whose (unsynced) write has returned: a commit that
	// starts after batch k's write makes it durable when it is (Begin).
	written   atomic.Uint64
	unsynced  []pending // the sequencer goroutine's: written, not yet shown
	followers sync.Map  // *follower -> struct{}
	holds     sync.Map  // *RetentionHold -> struct{}
	startHold *RetentionHold
	// subscribers and reserved count the followers against FollowersMax and
	// ReservedFollowersMax.
	subscribers, reserved atomic.Int64
	Stats                 Stats
}

// RetentionHold keeps retention from trimming the events from its position on: a follower
// that must see every event (the NATS publisher) holds them until it has handed them on.
type RetentionHold struct {
	s  *Sequencer
	at atomic.Uint64 // the first sequence kept; 0: all
}

// HoldRetention keeps every event until the hold moves (Move) or is released (Release).
func (s *Sequencer) HoldRetention() *RetentionHold {
	h := &RetentionHold{s: s}
	s.holds.Store(h, struct{}{})
	return h
}

// Move lets retention trim the events below next (a hold never moves back).
func (h *RetentionHold) Move(next uint64) {
	for {
		at := h.at.Load()
		if next <= at || h.at.CompareAndSwap(at, next) {
			return
		}
	}
}

// Release ends the hold.
func (h *RetentionHold) Release() { h.s.holds.Delete(h) }

// Start reads where the stream stands, indexes the rounds a crash left without sequences,
// and starts the sequencer. Start it before anything commits to the store.
func Start(store *storage.Store, cfg Config) (*Sequencer, error) {
	st, err := store.EventsState()
	if err != nil {
		return nil, err
	}
	s := &Sequencer{cfg: cfg, store: store, w: store.IndexWriter(), in: make(chan round, InboxRoundsMax),
		quit: make(chan struct{}), done: make(chan struct{}), end: make(chan struct{}), next: st.Next, last: st.Next - 1,
		notify: make(chan struct{}), ringEventsMax: RingEventsMax, ringBytesMax: RingBytesMax}
	s.Stats.Horizon.Store(st.Horizon)
	for len(st.Unindexed) > 0 {
		n := min(len(st.Unindexed), IndexBatchRoundsMax)
		batch := make([]round, n)
		for i, lr := range st.Unindexed[:n] {
			batch[i] = round{lr: lr}
		}
		if err := s.index(batch); err != nil {
			_ = s.w.Close()
			return nil, err
		}
		st.Unindexed = st.Unindexed[n:]
	}
	if err := s.sync(); err != nil {
		_ = s.w.Close()
		return nil, err
	}
	s.Stats.Last.Store(s.last)
	if cfg.HoldRetention {
		s.startHold = s.HoldRetention() // before the loop: its first retention run sees it
	}
	go s.loop()
	return s, nil
}

// StartHold is the retention hold Start took (Config.HoldRetention), nil without one.
func (s *Sequencer) StartHold() *RetentionHold { return s.startHold }

// Capturing reports whether committers should hand their rounds' events (someone follows).
func (s *Sequencer) Capturing() bool { return s.capturing.Load() > 0 }

// Begin is what a committer calls before it commits a round, and hands back with the round
// to Committed: the index batches written before the commit started, which its synced
// commit makes durable (the WAL is one sequence, synced as a prefix).
func (s *Sequencer) Begin() uint64 { return s.written.Load() }

// Committed takes a durable payment round (lr.Events > 0; a ledger round comes through
// CommittedLedger), its events (nil when not captured) and
// what Begin answered before its commit. Committers call it after their commit returned and
// before anything of the round is answered or sent, in their commit order. It waits while
// the inbox is full.
func (s *Sequencer) Committed(lr storage.LogRound, mark uint64, ev *storage.RoundEvents) {
	if lr.Events == 0 {
		return
	}
	if ev != nil && ev.Count() != int(lr.Events) {
		panic(fmt.Sprintf("events: round %d of log %d has %d events, its log record %d", lr.Round, lr.Log,
			ev.Count(), lr.Events))
	}
	select {
	case s.in <- round{lr: lr, ev: ev, mark: mark}:
	case <-s.quit:
		// Stopping: the round is durable in its log and is indexed on restart.
	}
}

// CommittedLedger is Committed for a ledger round: ts and ps are its transfer records and
// postings in the stream's order, read only during the call (the committer reuses them).
// While anyone follows, it encodes them for the wire here, in the committer's goroutine (no
// copy of the structs, and the sequencer's goroutine only writes the sequences in).
func (s *Sequencer) CommittedLedger(lr storage.LogRound, mark uint64, ts []ledger.Transfer, ps []ledger.Posting) {
	if lr.Events == 0 {
		return
	}
	if len(ts)+len(ps) != int(lr.Events) {
		panic(fmt.Sprintf("events: round %d of log %d has %d events, its log record %d", lr.Round, lr.Log,
			len(ts)+len(ps), lr.Events))
	}
	r := round{lr: lr, mark: mark}
	if s.Capturing() {
		// The sequences' width is guessed from the last one shown: number writes the round
		// again in the rare case it guessed wrong.
		if r.w = encodeRound(ts, ps, sizeVarint(s.Stats.Last.Load()+1)); r.w == nil {
			r.ev = &storage.RoundEvents{Transfers: slices.Clone(ts), Postings: slices.Clone(ps)}
		}
	}
	select {
	case s.in <- r:
	case <-s.quit:
		// Stopping: the round is durable in its log and is indexed on restart.
	}
}

// EndFollowers ends every follower (with ErrStopped) and refuses new ones, while the
// sequencer goes on numbering what the writers commit: shutdown calls it first, so that
// gRPC's graceful stop does not wait for streams that never end.
func (s *Sequencer) EndFollowers() { s.endOnce.Do(func() { close(s.end) }) }

// Stop indexes what has arrived and stops; followers end with ErrStopped. Stop the writers
// first: a round committed after Stop is indexed on the next start.
func (s *Sequencer) Stop() {
	s.EndFollowers()
	s.stop.Do(func() { close(s.quit) })
	<-s.done
}

func (s *Sequencer) loop() {
	defer close(s.done)
	defer func() { _ = s.w.Close() }()
	ticker := time.NewTicker(retentionInterval)
	defer ticker.Stop()
	syncTimer := time.NewTimer(time.Hour)
	syncTimer.Stop()
	defer syncTimer.Stop()
	batch := make([]round, 0, IndexBatchRoundsMax)
	for {
		batch = batch[:0]
		select {
		case r := <-s.in:
			batch = append(batch, r)
		case <-ticker.C:
			s.retain()
			continue
		case <-syncTimer.C:
			// Nothing committed since the last index batch to make it durable: sync.
			if err := s.sync(); err != nil {
				s.fail(err)
				return
			}
			continue
		case <-s.quit:
			s.drain(batch)
			return
		}
	gather:
		for len(batch) < IndexBatchRoundsMax {
			select {
			case r := <-s.in:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		// The rounds' commits prove the batches written before they started durable.
		var proof uint64
		for _, r := range batch {
			proof = max(proof, r.mark)
		}
		s.show(proof)
		if err := s.index(batch); err != nil {
			s.fail(err)
			return
		}
		clear(batch) // no round kept alive past the ring by the batch's spare slots
		if len(s.unsynced) > 0 {
			syncTimer.Reset(syncDelayMax)
		}
	}
}

// drain indexes what has arrived when stopping, syncs and shows it.
func (s *Sequencer) drain(batch []round) {
	for {
		select {
		case r := <-s.in:
			batch = append(batch, r)
			if len(batch) < IndexBatchRoundsMax {
				continue
			}
		default:
		}
		if len(batch) > 0 {
			if err := s.index(batch); err != nil {
				s.fail(err)
				return
			}
			batch = batch[:0]
			continue
		}
		if err := s.sync(); err != nil {
			s.fail(err)
		}
		return
	}
}

func (s *Sequencer) fail(err error) {
	s.cfg.Fatal(err)
	<-s.quit
}

// sync makes every index batch written durable (one synced WAL record) and shows them.
func (s *Sequencer) sync() error {
	if len(s.unsynced) == 0 {
		return nil
	}
	gen := s.written.Load()
	if err := s.store.SyncWAL(); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	s.show(gen)
	return nil
}

// index gives the rounds their sequences and writes them (not synced: a later synced
// commit, or sync, makes them durable, and show then shows them to followers).
func (s *Sequencer) index(batch []round) error {
	entries := make([]storage.IndexEntry, len(batch))
	for i, r := range batch {
		entries[i] = storage.IndexEntry{First: s.next, LogRound: r.lr}
		s.next += uint64(r.lr.Events)
	}
	if err := s.w.Commit(entries); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	s.Stats.IndexBatches.Add(1)
	gen := s.written.Load() + 1
	s.unsynced = append(s.unsynced, pending{gen: gen, entries: entries, rounds: slices.Clone(batch)})
	s.written.Store(gen)
	// A ledger round captured came encoded for the wire by its committer (CommittedLedger):
	// its sequences are written now that it has them, once for every follower. The ring
	// then holds no pointer per event for the garbage collector, and gRPC subscribers are
	// sent its bytes as they are. A payment round keeps its structs (few orders; the
	// in-process consumers want what the wire does not carry, Event.Exact and Opened).
	p := &s.unsynced[len(s.unsynced)-1]
	for i := range p.rounds {
		if r := &p.rounds[i]; r.w != nil {
			r.w = r.w.number(entries[i].First)
		}
	}
	return nil
}

// show makes the index batches up to gen (durable) visible to followers.
func (s *Sequencer) show(gen uint64) {
	n := 0
	for n < len(s.unsynced) && s.unsynced[n].gen <= gen {
		n++
	}
	if n == 0 {
		return
	}
	s.mu.Lock()
	for _, p := range s.unsynced[:n] {
		for i, e := range p.entries {
			// INVARIANT: sequences are gapless: each entry starts where the last one ended.
			if e.First != s.last+1 {
				panic(fmt.Sprintf("events: entry at %d after %d", e.First, s.last))
			}
			s.last = e.End() - 1
			r := &p.rounds[i]
			if !r.captured() {
				clear(s.ring) // no pointer left to what the ring dropped
				s.ring, s.ringN, s.ringB = s.ring[:0], 0, 0
				continue
			}
			c := chunk{IndexEntry: e, ev: r.ev, w: r.w}
			s.ring = append(s.ring, c)
			s.ringN += int(e.Events)
			s.ringB += c.size()
		}
	}
	drop := 0
	for (s.ringN > s.ringEventsMax || s.ringB > s.ringBytesMax) && drop < len(s.ring)-1 {
		s.ringN -= int(s.ring[drop].Events)
		s.ringB -= s.ring[drop].size()
		drop++
	}
	if drop > 0 {
		s.ring = slices.Delete(s.ring, 0, drop)
	}
	s.Stats.RingEvents.Store(int64(s.ringN))
	s.Stats.RingBytes.Store(int64(s.ringB))
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	s.unsynced = slices.Delete(s.unsynced, 0, n)
	s.Stats.Last.Store(s.last)
}

// retain trims the oldest events past RetainEvents, at a commit's boundary.
func (s *Sequencer) retain() {
	keep := s.cfg.RetainEvents
	last := s.Stats.Last.Load()
	horizon := s.Stats.Horizon.Load()
	if keep == 0 || last < keep || last+1-keep <= horizon {
		s.Stats.RetentionHeld.Store(0)
		return
	}
	target := last + 1 - keep
	// Never past a hold (the NATS publisher's next sequence): those events are not
	// published yet.
	want := target
	s.holds.Range(func(k, _ any) bool {
		target = min(target, k.(*RetentionHold).at.Load())
		return true
	})
	s.Stats.RetentionHeld.Store(want - max(target, horizon))
	if target <= horizon {
		return
	}
	v := s.store.Snapshot()
	defer v.Close()
	var at uint64
	err := v.EventEntries(target, func(e storage.IndexEntry) (bool, error) {
		at = e.First
		return false, nil
	})
	if err != nil || at <= horizon {
		return
	}
	// The horizon moves first: a follower that finds an entry gone checks it.
	s.Stats.Horizon.Store(at)
	if err := s.w.Trim(at); err != nil {
		s.cfg.Fatal(fmt.Errorf("events: trim: %w", err))
		return
	}
	s.Stats.Trims.Add(1)
}

// Last is the last sequence durable and streamed (0: none yet).
func (s *Sequencer) Last() uint64 { return s.Stats.Last.Load() }

// Horizon is the oldest sequence kept.
func (s *Sequencer) Horizon() uint64 { return s.Stats.Horizon.Load() }

// Lag is the largest lag, in events, of a follower behind the stream's last sequence.
func (s *Sequencer) Lag() uint64 {
	last := s.Last()
	var lag uint64
	s.followers.Range(func(k, _ any) bool {
		if next := k.(*follower).next.Load(); next <= last {
			lag = max(lag, last+1-next)
		}
		return true
	})
	return lag
}

type follower struct {
	next    atomic.Uint64
	pending []chunk // read from the store, not yet handed
}

// FollowOptions are a follower's.
type FollowOptions struct {
	// Reserved: the follower does not count against FollowersMax (at most
	// ReservedFollowersMax are): subscribers cannot crowd out the NATS publisher or the
	// reconciliation runner.
	Reserved bool
	// Coalesce lets a batch span index entries (up to BatchEventsMax events) when they are
	// at hand: fewer, larger messages when commits are small. Batches then depend on timing,
	// so a follower that names messages by their first sequence (NATS) must not.
	Coalesce bool
	// Linger (with Coalesce): a follower at the head of the stream, with fewer than
	// BatchEventsMax events to take, waits up to this long for more before it takes them:
	// fewer, larger batches when commits are small and many (each batch is a message, and a
	// message costs a subscriber's server far more than an event), at that much latency.
	// 0: none.
	Linger time.Duration
}

// Follow hands fn the stream's events from sequence next on, in batches of consecutive
// events (at most BatchEventsMax, never spanning two entries of the index unless
// opts.Coalesce), until ctx ends, fn fails, or the sequencer stops. A batch and its events
// are valid during the call only. The ring's ledger rounds are kept encoded: Follow decodes
// them (FollowWire does not).
func (s *Sequencer) Follow(ctx context.Context, next uint64, opts FollowOptions, fn func([]Event) error) error {
	buf := make([]Event, 0, BatchEventsMax)
	var d decoded
	return s.follow(ctx, next, opts, func(spans []span, _ int) error {
		buf = buf[:0]
		d.t, d.p = d.t[:0], d.p[:0]
		for i := range spans {
			var err error
			if buf, err = spans[i].appendEvents(buf, &d); err != nil {
				return err
			}
		}
		return fn(buf)
	})
}

// WireBatch is a batch of events in the stream's wire encoding: Parts, one after the other,
// are a SubscribeResponse (proto/ledger/v1) holding the events First to First+Events-1.
// The bytes of Parts are never changed (a transport may hold them after the call); the
// slice Parts is valid during the call only.
type WireBatch struct {
	First  uint64
	Events int
	Parts  [][]byte
}

// FollowWire is Follow for a follower that sends the events on as the wire has them (gRPC
// subscribers): the ring's ledger rounds, encoded once by their committers, are handed as they
// are, shared by every follower; the other events (payment rounds, and what a follower
// behind the ring reads from the store) are encoded with encode, which appends a batch of
// events as a SubscribeResponse (api.EncodeEvents), into a buffer of the batch's own.
func (s *Sequencer) FollowWire(ctx context.Context, next uint64, opts FollowOptions,
	encode func(dst []byte, batch []Event) []byte, fn func(WireBatch) error) error {
	var parts [][]byte
	var evs []Event
	return s.follow(ctx, next, opts, func(spans []span, n int) error {
		parts = parts[:0]
		for i := 0; i < len(spans); i++ {
			sp := &spans[i]
			if w := sp.c.w; w != nil {
				parts = append(parts, w.b[w.off[sp.from]:w.off[sp.to]:w.off[sp.to]])
				continue
			}
			// Consecutive spans of structs are encoded together.
			evs = evs[:0]
			var err error
			for ; i < len(spans) && spans[i].c.w == nil; i++ {
				if evs, err = spans[i].appendEvents(evs, nil); err != nil { // structs: nothing to decode
					return err
				}
			}
			i--
			parts = append(parts, encode(make([]byte, 0, 64*len(evs)), evs))
		}
		return fn(WireBatch{First: spans[0].c.First + uint64(spans[0].from), Events: n, Parts: parts})
	})
}

// span is the events from..to-1 of an entry (offsets in it).
type span struct {
	c        chunk
	from, to int
}

// decoded holds a batch's transfer records and postings decoded from the ring; the events
// handed point into it, so it never grows during a batch (BatchEventsMax of each).
type decoded struct {
	t []ledger.Transfer
	p []ledger.Posting
}

// appendEvents appends the span's events to dst.
func (sp *span) appendEvents(dst []Event, d *decoded) ([]Event, error) {
	w := sp.c.w
	if w == nil {
		return appendStructs(dst, sp.c, sp.from, sp.to), nil
	}
	if cap(d.t) < BatchEventsMax {
		d.t, d.p = make([]ledger.Transfer, 0, BatchEventsMax), make([]ledger.Posting, 0, BatchEventsMax)
	}
	h, _ := slices.BinarySearch(w.history, uint32(sp.from))
	for i := sp.from; i < sp.to; i++ {
		if len(d.t) == cap(d.t) || len(d.p) == cap(d.p) {
			return dst, errors.New("events: a batch past BatchEventsMax") // never: batches are at most that
		}
		var e Event
		t, p := d.t[:len(d.t)+1], d.p[:len(d.p)+1]
		if err := decodeWire(w.b[w.off[i]:w.off[i+1]], &e, &t[len(t)-1], &p[len(p)-1]); err != nil {
			return dst, fmt.Errorf("%w: sequence %d", err, sp.c.First+uint64(i))
		}
		if e.Seq != sp.c.First+uint64(i) {
			return dst, fmt.Errorf("%w: sequence %d reads %d", errWire, sp.c.First+uint64(i), e.Seq)
		}
		if e.Transfer != nil {
			d.t = t
		} else {
			d.p = p
			if h < len(w.history) && w.history[h] == uint32(i) {
				e.Posting.History = true
				h++
			}
		}
		dst = append(dst, e)
	}
	return dst, nil
}

// follow is Follow's loop: it hands fn each batch as spans of entries (n events in all).
func (s *Sequencer) follow(ctx context.Context, next uint64, opts FollowOptions, fn func(spans []span, n int) error) error {
	if next == 0 {
		next = 1
	}
	select {
	case <-s.end:
		return ErrStopped
	default:
	}
	count, limit := &s.subscribers, int64(FollowersMax)
	if opts.Reserved {
		count, limit = &s.reserved, ReservedFollowersMax
	}
	if count.Add(1) > limit {
		count.Add(-1)
		return ErrTooManyFollowers
	}
	defer count.Add(-1)
	s.Stats.Followers.Add(1)
	defer s.Stats.Followers.Add(-1)
	s.capturing.Add(1)
	defer s.capturing.Add(-1)
	f := &follower{}
	f.next.Store(next)
	s.followers.Store(f, struct{}{})
	defer s.followers.Delete(f)
	spans := make([]span, 0, 16)
	var linger *time.Timer // one per follower that lingers
	lingered := false      // this batch waited its Linger already
	for {
		if h := s.Horizon(); next < h {
			return &TrimmedError{Asked: next, Oldest: h}
		}
		s.mu.RLock()
		last, wait := s.last, s.notify
		c, inRing := s.ringChunk(next)
		s.mu.RUnlock()
		if next > last {
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-s.end:
				return ErrStopped
			}
		}
		if opts.Coalesce && opts.Linger > 0 && !lingered && last-next+1 < BatchEventsMax {
			lingered = true
			if linger == nil {
				linger = time.NewTimer(opts.Linger)
				defer linger.Stop()
			} else {
				linger.Reset(opts.Linger)
			}
			if err := s.lingerFor(ctx, linger, next, wait); err != nil {
				return err
			}
			continue // what came meanwhile is taken too
		}
		if !inRing {
			var err error
			if c, err = s.stored(f, next, last); err != nil {
				if errors.Is(err, storage.ErrEventsTrimmed) {
					return &TrimmedError{Asked: next, Oldest: s.Horizon()}
				}
				return err
			}
		}
		var n int
		spans, n = appendSpan(spans[:0], c, next, BatchEventsMax)
		if opts.Coalesce {
			spans, n = s.coalesce(f, spans, n, next+uint64(n), last)
		}
		select {
		case <-s.end:
			return ErrStopped
		default:
		}
		if err := fn(spans, n); err != nil {
			return err
		}
		next += uint64(n)
		f.next.Store(next)
		lingered = false
	}
}

// lingerFor waits until the timer t fires or BatchEventsMax events from next are durable,
// whichever is first; wait is the notification of the last sequence read.
func (s *Sequencer) lingerFor(ctx context.Context, t *time.Timer, next uint64, wait <-chan struct{}) error {
	for {
		select {
		case <-wait:
			s.mu.RLock()
			last := s.last
			wait = s.notify
			s.mu.RUnlock()
			if last+1-next >= BatchEventsMax {
				t.Stop() // Go 1.23 timers: nothing stale to drain before the next Reset
				return nil
			}
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-s.end:
			return ErrStopped
		}
	}
}

// coalesce appends to spans the events from seq on that are at hand (in the ring, or read
// from the store already), up to BatchEventsMax in all (n so far) and last.
func (s *Sequencer) coalesce(f *follower, spans []span, n int, seq, last uint64) ([]span, int) {
	for n < BatchEventsMax && seq <= last {
		s.mu.RLock()
		c, ok := s.ringChunk(seq)
		s.mu.RUnlock()
		if !ok {
			if len(f.pending) == 0 || f.pending[len(f.pending)-1].End() <= seq {
				return spans, n
			}
			var err error
			if c, err = s.stored(f, seq, last); err != nil {
				return spans, n
			}
		}
		var k int
		spans, k = appendSpan(spans, c, seq, BatchEventsMax-n)
		n += k
		seq += uint64(k)
	}
	return spans, n
}

// ringChunk finds the ring's entry holding seq (under mu).
func (s *Sequencer) ringChunk(seq uint64) (chunk, bool) {
	if len(s.ring) == 0 || seq < s.ring[0].First || seq > s.last {
		return chunk{}, false
	}
	i, _ := slices.BinarySearchFunc(s.ring, seq, func(c chunk, seq uint64) int {
		switch {
		case c.End() <= seq:
			return -1
		case c.First > seq:
			return 1
		}
		return 0
	})
	return s.ring[i], true
}

// stored finds the entry holding seq among the follower's reads from the store, reading
// the next ones (up to StoreReadEventsMax events, up to last) when it has none.
func (s *Sequencer) stored(f *follower, seq, last uint64) (chunk, error) {
	for len(f.pending) > 0 && f.pending[0].End() <= seq {
		f.pending = f.pending[1:]
	}
	if len(f.pending) > 0 && f.pending[0].First <= seq {
		return f.pending[0], nil
	}
	f.pending = f.pending[:0]
	s.Stats.StoreReads.Add(1)
	v := s.store.Snapshot()
	defer v.Close()
	n := 0
	err := v.EventEntries(seq, func(e storage.IndexEntry) (bool, error) {
		if e.First > last {
			return false, nil
		}
		ev, err := v.RoundEvents(e.LogRound)
		if err != nil {
			return false, err
		}
		f.pending = append(f.pending, chunk{IndexEntry: e, ev: ev})
		n += int(e.Events)
		return n < StoreReadEventsMax, nil
	})
	if err != nil {
		return chunk{}, err
	}
	if len(f.pending) == 0 || f.pending[0].First > seq {
		return chunk{}, fmt.Errorf("%w: sequence %d is in no index entry", storage.ErrEventsTrimmed, seq)
	}
	return f.pending[0], nil
}

// appendSpan appends the span of c from seq up to the end of seq's batch (batches start at
// c.First plus a multiple of BatchEventsMax), and at most n events; it answers how many.
func appendSpan(dst []span, c chunk, seq uint64, n int) ([]span, int) {
	off := int(seq - c.First)
	end := min(int(c.Events), (off/BatchEventsMax+1)*BatchEventsMax, off+n)
	return append(dst, span{c: c, from: off, to: end}), end - off
}

// appendStructs appends the events off..end-1 of c, kept as structs.
func appendStructs(dst []Event, c chunk, off, end int) []Event {
	ev := c.ev
	nt, np := len(ev.Transfers), len(ev.Postings)
	// The order events: walk to the order holding off.
	oi, ox := 0, -1
	if off >= nt+np {
		k := off - nt - np
		for k > len(ev.Orders[oi].Exceptions) {
			k -= 1 + len(ev.Orders[oi].Exceptions)
			oi++
		}
		ox = k - 1
	}
	for i := off; i < end; i++ {
		e := Event{Seq: c.First + uint64(i), Exception: -1}
		switch {
		case i < nt:
			e.Transfer = &ev.Transfers[i]
		case i < nt+np:
			e.Posting = &ev.Postings[i-nt]
		default:
			o := &ev.Orders[oi]
			e.Order, e.Exact = o.Order, o.Exact
			if ox >= 0 {
				e.Exception = o.Exceptions[ox]
				e.Opened = o.Exact && o.Opened[ox]
			}
			if ox++; ox == len(o.Exceptions) {
				oi, ox = oi+1, -1
			}
		}
		dst = append(dst, e)
	}
	return dst
}
