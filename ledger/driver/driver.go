// Package driver is a shard's protocol as a pure, deterministic state machine: rounds and
// group commit, id claims, credit legs and their answers, re-delivery, forgets, hot-account
// buffers, drain and stop. A Driver owns one shard's ledger.Book. Its inputs are method calls
// (a request's part, a message from another shard, a commit's completion, a tick, a timer),
// and its outputs go through its Host: messages to other shards, replies, rounds to commit,
// timers to arm. It starts no goroutine, takes no lock and reads no clock of its own (time
// comes from Config.Now and Tick), so the same inputs in the same order give the same
// outputs: the actors package runs it on Proto.Actor, and package sim runs many of them on
// one goroutine with a seeded network, storage and clock.
//
// Delivery between shards is not assumed to be in order, once, or at all; what each message
// kind relies on:
//   - Legs are idempotent on their key (ledger.LegKey): the credit shard applies a leg once and
//     answers every copy from its record. An unanswered leg is sent again every
//     RedeliverAfterTicks ticks, so a lost leg or answer only delays. The record is looked up
//     in storage only for a leg that may have been applied before: one sent again
//     (ledger.Leg.Redelivered), or one in a message that arrived out of order. Legs messages
//     are numbered per receiver; a receiver drops a message it has seen (seenWindow), and a
//     copy sent again always travels in a later message than the first sending, so a first
//     sending that arrives in order cannot have been applied, and needs no read.
//   - Forgets delete those records, so a copy of a leg still on its way after its forget would
//     be applied twice. A forget batch is acknowledged once its deletions are durable, and sent
//     again until it is, so a lost one leaves no record behind. Each Legs message carries the number of forget batches its sender had
//     sent to the receiver (Stamp); a forget batch carries its own number. A leg the receiver
//     has no record of, stamped below the highest forget number received, is a stale copy (or
//     an early copy of a leg that is still unanswered, which its sender will send again with a
//     new stamp): it is dropped. Copies of a forgotten leg were all sent before its forget,
//     so they are all stamped below it.
//   - Claims are numbered, and held per (claimer, claim number): a claim that comes again while
//     its grant is held is granted again, never to two shards at once (claims.go). A claim
//     unanswered for RedeliverAfterTicks ticks is sent again. Releases are acknowledged and sent
//     again until they are. A grant that arrives for a claim no longer wanted (a duplicate after
//     the claim was released) is released at once, and an arbiter asks the holder of a grant
//     held for long whether it still wants it (Held), so a grant whose answer was lost is
//     released too.
//
// A node's shards stop and recover together: claims and forget numbers live in memory, and a
// crash drops every message in flight with them.
package driver

import (
	"cmp"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/ledger"
)

// Store is what a driver reads from storage (storage.Reader satisfies it). A read error stops
// the shard: it cannot tell absent from unreadable.
type Store interface {
	Transfers(ids []uint64, fn func(ledger.Transfer)) error
	AccountInfo(id uint64) (ledger.AccountInfo, bool, error)
	LegResult(k ledger.LegKey) (ledger.TransferResult, bool, error)
}

// Host carries out what a driver decides. Its methods are called from the driver's input
// methods, never concurrently with them.
type Host interface {
	// Send delivers m to shard to's driver (Receive), as the network may: later, or not at all.
	Send(to uint32, m Message)
	// Commit writes the round's effects as one synced batch, then calls Committed with r.Err set.
	// Up to Config.RoundsInFlight rounds commit at once: the host commits them in the order
	// they were handed to it, so that a round is durable only after the rounds before it.
	Commit(r *Round)
	// Wake calls Wake once the inputs already queued for this driver are handled.
	Wake()
	// ArmHotFlush calls HotFlush after d (re-arming replaces the earlier timer).
	ArmHotFlush(d time.Duration)
	// ReplyAccounts and ReplyTransfers answer a request's part.
	ReplyAccounts(p *AccountsPart)
	ReplyTransfers(p *TransfersPart)
	// Durable reports, without waiting, whether r's commit has returned (its Err set): the
	// driver may complete it then, between the pieces of a part (Committed, called still, does
	// nothing more). false is always right.
	Durable(r *Round) bool
}

// Observer takes one observation (a Prometheus histogram satisfies it).
type Observer interface{ Observe(float64) }

type nopObserver struct{}

func (nopObserver) Observe(float64) {}

// Config configures a driver.
type Config struct {
	Shard, Shards uint32
	// Now is the time in Unix nanoseconds.
	Now func() uint64
	// RedeliverAfterTicks: how many ticks an unanswered leg, claim or release waits before it
	// is sent again.
	RedeliverAfterTicks uint64
	// HotFlushInterval and HotBufferLegsMax: when a hot account's buffer is sent (hot.go).
	HotFlushInterval time.Duration
	HotBufferLegsMax int
	// Counters are shared by every driver of a ledger; nil: the driver keeps its own.
	Counters *Counters
	// HotFlushLegs observes the legs of each hot-account buffer sent.
	HotFlushLegs Observer
	// PieceEvents: a part of more transfers runs in pieces of about this many (no linked chain
	// cut), and between two the rounds committing that are durable by then are completed
	// (Host.Durable) and the round gathered is sealed if there is room (none commits, or
	// fewer than RoundsInFlight and it holds this many transfers): a large request's commit
	// overlaps running the rest of it, not after it. 0: PieceEventsDefault; negative: a part
	// runs whole.
	PieceEvents int
	// RoundsInFlight: how many sealed rounds may commit at once (the host commits them in
	// order), so that one round's batch is written while the one before it syncs; a second
	// round is sealed only once it holds PieceEvents transfers (room). 1 is a pipeline of
	// depth one: the next round gathers while one commits. 0: RoundsInFlightDefault; at most
	// RoundsInFlightMax.
	RoundsInFlight int
}

// RoundsInFlightDefault is Config.RoundsInFlight unless set, and RoundsInFlightMax its limit.
const (
	RoundsInFlightDefault = 2
	RoundsInFlightMax     = 2
)

// PieceEventsDefault is Config.PieceEvents unless set. With one request of 8,190 transfers
// in flight, pieces of 1,024 made transfers 2-8% faster than whole parts, and 512 or 2,048
// less so: each piece's round is one more WAL sync (bench/RESULTS.md, session 17).
const PieceEventsDefault = 1024

// Flush reasons, the label values of ledger_hot_flushes_total.
const (
	FlushInterval = iota
	FlushSize
	FlushDrain
	FlushAlong // with other legs to the same shard
	FlushReasons
)

// FlushReasonNames names the flush reasons.
var FlushReasonNames = [FlushReasons]string{"interval", "size", "drain", "along"}

// Counters are the drivers' counters, read by the metrics adapter.
type Counters struct {
	Commits     atomic.Uint64
	Postings    atomic.Uint64
	Redelivered atomic.Uint64 // legs sent again
	// HotFlushes counts hot-account buffers sent, one per account buffer, by reason.
	HotFlushes [FlushReasons]atomic.Uint64
	// StorageErrors counts rounds whose commit failed (the shard stopped on each).
	StorageErrors atomic.Uint64
	// Resent counts claims and releases sent again, unanswered.
	Resent atomic.Uint64
	// StaleLegs counts leg copies dropped as stamped before a forget (see the package doc).
	StaleLegs atomic.Uint64
	// DuplicateMessages counts Legs messages dropped as delivered before.
	DuplicateMessages atomic.Uint64
}

// Gauges are one shard's gauges, as of its last round or tick.
type Gauges struct {
	Outbox   atomic.Int64 // unanswered legs
	Oldest   atomic.Int64 // when the oldest unanswered leg was first sent (Unix ns), 0: none
	Buffered atomic.Int64 // legs in hot-account buffers, not yet sent
	Drains   atomic.Int64 // drains waiting for legs (DrainsWaiting)
}

// Part is the share of one request that one shard runs: its events and their results. The
// driver answers it (Host.Reply*) once the round holding it is durable and, for transfers,
// every credit leg it sent was answered. Index and Done belong to the host.
type Part[E, R any] struct {
	Events  []E
	Results []R
	Index   []int32            // the host's: position of each event in the request
	Done    chan<- *Part[E, R] // the host's

	outstanding int        // legs not yet answered
	committed   bool       // the round holding the part is durable
	answered    bool       // the host was given its answer
	claims      int        // transfer ids claimed from other shards and not yet answered
	claimSeq    uint64     // the number its claims are held under (0: none yet)
	claimed     []ClaimRef // claims this part holds, given back once its round is durable
	denied      []uint64   // ids another shard holds: this part's transfers with them answer id_in_flight
}

type (
	AccountsPart  = Part[ledger.Account, ledger.AccountResult]
	TransfersPart = Part[ledger.Transfer, ledger.TransferResult]
)

// Round is one sealed round on its way to storage.
type Round struct {
	Seq     uint64
	Effects *ledger.Effects
	Clock   uint64 // the book's clock, stored with the round
	// Err is the host's: the commit's error, set before Committed.
	Err error
	// Durable is the host's to close once the commit returned (the actors host waits on it).
	Durable chan struct{}

	releases   [][]ClaimRef // claims to give back once the round is durable, per shard
	forgetAcks []forgetRef  // forget batches whose records the round deletes, to acknowledge
	accounts   []*AccountsPart
	parts      []*TransfersPart
	handled    bool
}

// Closed reports, without waiting, whether the host closed r.Durable: its commit returned
// (Err set).
func (r *Round) Closed() bool {
	select {
	case <-r.Durable:
		return true
	default:
		return false
	}
}

// waiter is a sent leg whose answer a request (or, for legs from recovery and expiry,
// nobody) waits for.
type waiter struct {
	part  *TransfersPart
	index int32
	sent  uint64 // the tick it was last sent at
	round uint64 // the round that made it: it may be re-sent only once that round is durable
	first int64  // when it was first sent (Unix ns; for the age gauge)
	// buffered: a leg for a hot account that its buffer has not sent yet; nobody waits for it
	// and it is not re-sent until it is.
	buffered bool
	// repeats: transfers that repeated the leg's transfer while the leg was unanswered
	// (ledger.LegAwait); each answers what the first copy answers, when it does.
	repeats []repeat
}

// repeat is one transfer of a request that waits for another transfer's leg.
type repeat struct {
	part  *TransfersPart
	index int32
}

// Driver is one shard's protocol state machine.
type Driver struct {
	cfg   Config
	host  Host
	store Store
	book  *ledger.Book
	stats *Counters
	// Gauges are this shard's gauges.
	Gauges Gauges

	needs    ledger.Needs
	midPart  bool              // running a part's pieces (runPart): no trim, no stop between them
	fx       *ledger.Effects   // the round being gathered
	spares   []*ledger.Effects // buffers not gathering nor committing
	accounts []*AccountsPart
	parts    []*TransfersPart // run, in the round being gathered
	arrived  []*TransfersPart // received, not yet run: run together at the next Wake
	inflight []*Round         // the rounds being committed, oldest first; at most cfg.RoundsInFlight
	wait     bool             // the host must complete inflight before any other input (Wait)
	waiting  map[ledger.LegKey]waiter
	woken    bool  // a Wake is queued
	stopping bool  // Stop was called: seal what is gathered until nothing is left
	stopped  bool  // everything is durable after Stop: every input is dropped
	failed   error // a commit failed: every input is dropped
	ticks    uint64
	gather   uint64 // the number of the round being gathered
	durable  uint64 // the number of the last round known durable
	legsTo   [][]ledger.Leg
	answerTo [][]ledger.LegResult
	forgetTo [][]ledger.LegKey // forgets of the round being completed, per credit shard

	// Forget numbers (see the package doc).
	forgetsSent    []uint64                     // forget batches sent, per shard
	forgetFloor    []uint64                     // the highest forget number received, per shard
	forgetsUnacked map[forgetRef]*unackedForget // forget batches sent, not acknowledged
	forgetAcks     []forgetRef                  // forget batches taken in the gathering round
	// Legs message numbers.
	legsSent []uint64     // Legs messages sent, per shard
	legsSeen []seenWindow // Legs messages received, per shard

	// Accounting days: the last day switch known durable, and who waits for one.
	dayDurable ledger.Day
	dayWaits   []dayWait

	claimState
	hotState
}

// dayWait is a SwitchDay waiting for its switch to be durable.
type dayWait struct {
	day  ledger.Day
	done func()
}

// New makes a driver over book, which recovery loaded from store.
func New(cfg Config, host Host, store Store, book *ledger.Book) *Driver {
	if cfg.Counters == nil {
		cfg.Counters = &Counters{}
	}
	if cfg.HotFlushLegs == nil {
		cfg.HotFlushLegs = nopObserver{}
	}
	if cfg.RoundsInFlight <= 0 {
		cfg.RoundsInFlight = RoundsInFlightDefault
	}
	cfg.RoundsInFlight = min(cfg.RoundsInFlight, RoundsInFlightMax)
	if cfg.PieceEvents == 0 {
		cfg.PieceEvents = PieceEventsDefault
	} else if cfg.PieceEvents < 0 {
		cfg.PieceEvents = ledger.BatchEventsMax
	}
	n := cfg.Shards
	d := &Driver{cfg: cfg, host: host, store: store, book: book, stats: cfg.Counters, gather: 1,
		fx: &ledger.Effects{}, waiting: make(map[ledger.LegKey]waiter),
		legsTo: make([][]ledger.Leg, n), answerTo: make([][]ledger.LegResult, n), forgetTo: make([][]ledger.LegKey, n),
		forgetsSent: make([]uint64, n), forgetFloor: make([]uint64, n),
		legsSent: make([]uint64, n), legsSeen: make([]seenWindow, n), forgetsUnacked: map[forgetRef]*unackedForget{}}
	d.claimState.init(n)
	d.hotState.init()
	d.Gauges.Outbox.Store(int64(book.OutboxLen()))
	d.dayDurable = book.Day()
	return d
}

// SwitchDay makes day the accounting day of the postings this shard makes from now on (the
// point is this call's place in the shard's stream of inputs) and calls done once the switch
// is durable, with every round before it. One expiry sweep runs first: holds due by now
// expire on the day they are due in, at most ledger.ExpiriesPerSweepMax of them; holds past
// that many, or parked (their leg in flight), expire at later sweeps, on the new day (the
// old day's closing balance holds them pending; the release is the new day's posting). A day at or before the shard's current day switches nothing: done is called
// once the switch to it (or past it) is durable. Once the switch's round is durable, the
// shard's hot-account buffers are sent, so that a buffer holds the legs of one day.
func (d *Driver) SwitchDay(day ledger.Day, done func()) {
	if !d.live() {
		return
	}
	if day > d.book.Day() {
		d.switchDay(day)
	}
	if day <= d.dayDurable {
		done()
		return
	}
	d.dayWaits = append(d.dayWaits, dayWait{day: day, done: done})
}

// switchDay switches the book to day (later than its own) in the round being gathered,
// after one expiry sweep (bounded: see SwitchDay).
func (d *Driver) switchDay(day ledger.Day) {
	before := len(d.fx.LegsOut)
	d.book.Expire(d.cfg.Now(), d.fx)
	d.watchLegs(before, nil)
	d.book.SwitchDay(day, d.fx)
	d.wake()
}

// daySwitched takes a durable round's day switches: buffers go, and the waits are answered.
func (d *Driver) daySwitched(days []ledger.DayStart) {
	d.dayDurable = days[len(days)-1].Day
	d.flushBuffers(FlushDrain)
	kept := d.dayWaits[:0]
	for _, w := range d.dayWaits {
		if w.day <= d.dayDurable {
			w.done()
			continue
		}
		kept = append(kept, w)
	}
	clear(d.dayWaits[len(kept):])
	d.dayWaits = kept
}

// live reports whether the driver takes inputs.
func (d *Driver) live() bool { return !d.stopped && d.failed == nil }

// Accounts takes a request's accounts: they are created in the round being gathered.
func (d *Driver) Accounts(p *AccountsPart) {
	if !d.live() {
		return
	}
	d.book.CreateAccounts(d.cfg.Now(), p.Events, p.Results, d.fx)
	d.accounts = append(d.accounts, p)
	d.wake()
}

// Transfers takes a request's transfers: they run, together with the others that arrived
// meanwhile, at the next Wake.
func (d *Driver) Transfers(p *TransfersPart) {
	if !d.live() {
		return
	}
	d.arrived = append(d.arrived, p)
	d.wake()
}

// Receive takes a message from another shard.
func (d *Driver) Receive(m Message) {
	if !d.live() {
		return
	}
	switch m := m.(type) {
	case *Legs:
		d.legs(m)
	case *Answers:
		d.book.ApplyLegResults(d.cfg.Now(), m.Answers, d.fx)
		d.wake()
	case *Forget:
		d.forget(m.From, m.Seq, m.Keys)
		d.wake()
	case *Claim:
		d.grant(m)
	case *ClaimAnswer:
		d.answered(m)
	case *Release:
		d.released(m)
	case *ReleaseAck:
		d.releaseAcked(m)
	case *Held:
		d.held(m)
	case *ForgetAck:
		delete(d.forgetsUnacked, forgetRef{to: m.From, seq: m.Seq})
	default:
		panic(fmt.Sprintf("driver: unknown message %T", m))
	}
}

// legs applies credit legs, dropping stale copies (see the package doc), and the forgets that
// came with them. A message seen before is dropped whole. A leg's copies sent again travel in
// later messages than its first sending, so a message that comes after every other from its
// sender carries first sendings that cannot have been applied; one that comes out of order (or
// too old to tell) may have been overtaken by copies of its legs, which are looked up as if
// sent again.
func (d *Driver) legs(m *Legs) {
	legs := m.Legs
	switch d.legsSeen[m.From].see(m.Seq) {
	case seenBefore:
		d.stats.DuplicateMessages.Add(1)
		return
	case seenOutOfOrder, seenUnknown:
		legs = slices.Clone(legs)
		for i := range legs {
			legs[i].Redelivered = true
		}
	}
	d.book.NeedsForLegs(legs, &d.needs)
	d.prefetch()
	if m.Stamp < d.forgetFloor[m.From] {
		all := legs
		legs = legs[:0:0]
		for _, l := range all {
			if _, known := d.book.LegApplied(l.LegKey); known {
				legs = append(legs, l)
				continue
			}
			d.stats.StaleLegs.Add(1)
		}
	}
	// A leg of a day later than this shard's (its sender switched first: the explicit switch
	// to that day has not reached this shard yet, or a crash stopped it) switches this shard
	// to that day first, in this round, so that the day's start is stored before the leg's
	// posting and the day's per-account seek finds it. The explicit switch then finds the
	// shard on the day and only waits for it to be durable.
	var latest ledger.Day
	for i := range legs {
		latest = max(latest, legs[i].Day)
	}
	if latest > d.book.Day() {
		d.switchDay(latest)
	}
	d.book.ApplyLegs(d.cfg.Now(), legs, d.fx)
	if len(m.Forget) > 0 {
		d.forget(m.From, m.Stamp, m.Forget)
	}
	d.wake()
}

// forget deletes the records a forget batch names, and acknowledges it once that is durable.
func (d *Driver) forget(from uint32, seq uint64, keys []ledger.LegKey) {
	d.book.ForgetLegs(keys, d.fx)
	d.forgetFloor[from] = max(d.forgetFloor[from], seq)
	d.forgetAcks = append(d.forgetAcks, forgetRef{to: from, seq: seq})
}

// forgetRef names a forget batch: the shard it went to (or came from) and its number.
type forgetRef struct {
	to  uint32
	seq uint64
}

// unackedForget is a forget batch sent and not acknowledged yet.
type unackedForget struct {
	keys []ledger.LegKey
	sent uint64 // the tick it was last sent at
}

// trackForget records a forget batch sent, to send again until it is acknowledged.
func (d *Driver) trackForget(to uint32, seq uint64, keys []ledger.LegKey) {
	d.forgetsUnacked[forgetRef{to: to, seq: seq}] = &unackedForget{keys: keys, sent: d.ticks}
}

// resendForgets sends again the forget batches unacknowledged for RedeliverAfterTicks ticks.
func (d *Driver) resendForgets() {
	resendDue(d, d.forgetsUnacked,
		func(x, y forgetRef) int { return cmp.Or(cmp.Compare(x.to, y.to), cmp.Compare(x.seq, y.seq)) },
		func(f *unackedForget) *uint64 { return &f.sent },
		func(r forgetRef, f *unackedForget) {
			d.host.Send(r.to, &Forget{From: d.cfg.Shard, Seq: r.seq, Keys: f.keys})
		})
}

// Wake runs what arrived since the last Wake and, when no round is committing, seals the
// round gathered.
func (d *Driver) Wake() {
	d.woken = false
	if !d.live() {
		return
	}
	d.runArrived()
	if d.room() {
		d.seal()
	}
}

// room reports whether the round gathered may be sealed: none commits, or fewer than
// cfg.RoundsInFlight do and the round gathered holds a piece's worth of transfers at least
// (small rounds are better gathered into one: each round is one more WAL sync and a round's
// fixed costs, and rows of one transfer per call lost 8-11% sealed at once, bench/RESULTS.md,
// session 20), and none of those committing is known to have failed (its commit returned
// with an error, which Committed will report; nothing more is sealed after it).
func (d *Driver) room() bool {
	switch n := len(d.inflight); {
	case n == 0:
		return true
	case n >= d.cfg.RoundsInFlight || len(d.fx.Transfers) < d.cfg.PieceEvents:
		return false
	}
	for _, r := range d.inflight {
		if r.Closed() && r.Err != nil {
			return false
		}
	}
	return true
}

func (d *Driver) wake() {
	if !d.woken {
		d.woken = true
		d.host.Wake()
	}
}

// Wait returns the committing round the host must complete (Committed) before any other
// input, or nil: under a load that never pauses, so that the book can trim, and after Stop.
func (d *Driver) Wait() *Round {
	if d.wait && len(d.inflight) > 0 && d.failed == nil {
		return d.inflight[0]
	}
	return nil
}

// Tick sweeps expired holds and re-sends legs, claims and releases unanswered for too long.
func (d *Driver) Tick(now uint64) {
	if !d.live() {
		return
	}
	d.ticks++
	before := len(d.fx.LegsOut)
	d.book.Expire(now, d.fx)
	d.watchLegs(before, nil)
	d.redeliver(d.cfg.RedeliverAfterTicks)
	d.resendClaims()
	d.resendForgets()
	d.askHolders()
	var oldest int64
	for _, w := range d.waiting {
		if oldest == 0 || w.first < oldest {
			oldest = w.first
		}
	}
	d.Gauges.Oldest.Store(oldest)
	if !d.fx.Empty() {
		d.wake()
	}
}

// Recover re-sends the outbox loaded from storage (every peer is up).
func (d *Driver) Recover() {
	if d.live() {
		d.redeliver(0)
	}
}

// Stop runs what arrived and commits everything gathered; the host completes the rounds Wait
// returns until it returns nil, after which the driver drops every input. Legs still
// unanswered stay in the outbox, for recovery.
func (d *Driver) Stop() {
	if !d.live() {
		return
	}
	d.stopping, d.wait = true, true
	d.runArrived()
	if d.room() {
		d.seal()
	}
	if len(d.inflight) == 0 {
		d.stopped = true
	}
}

// Idle reports whether the driver has nothing gathered, committing, or waiting to run: what its
// book holds is durable.
func (d *Driver) Idle() bool {
	return len(d.inflight) == 0 && d.fx.Empty() && len(d.accounts) == 0 && len(d.parts) == 0 &&
		len(d.arrived) == 0 && len(d.asked) == 0
}

// runArrived runs the transfer requests that arrived since the last Wake, after one look-up
// in storage for all of them. With more than one shard, a request whose new transfer ids
// belong to other shards waits for their claims to be granted (claims.go).
func (d *Driver) runArrived() {
	if len(d.arrived) == 0 {
		return
	}
	for _, p := range d.arrived {
		d.book.NeedsForTransfers(p.Events[:d.lookedUpAtArrival(p.Events)], &d.needs)
	}
	d.prefetch()
	now := d.cfg.Now()
	for _, p := range d.arrived {
		if d.cfg.Shards > 1 {
			d.claim(p)
		}
		if p.claims == 0 {
			d.runPart(now, p)
		}
	}
	clear(d.arrived)
	d.arrived = d.arrived[:0]
	d.sendClaims()
}

// lookedUpAtArrival is how many of a part's transfers runArrived looks up in storage with the
// other parts that arrived: with one shard, its first piece; runPart looks up each later piece
// just before running it, so that the first runs (and its round commits) sooner, and each
// piece's look-ups find the book's cache lines of its ids still warm when it runs. With more
// shards, all of them: claims must know which ids are stored (claim).
func (d *Driver) lookedUpAtArrival(ts []ledger.Transfer) int {
	if d.cfg.Shards == 1 {
		return ledger.PieceEnd(ts, 0, d.cfg.PieceEvents)
	}
	return len(ts)
}

func (d *Driver) runPart(now uint64, p *TransfersPart) {
	for _, id := range p.denied {
		d.book.LoadClaimedElsewhere(id)
	}
	d.midPart = true
	for lo := 0; lo < len(p.Events); {
		hi := ledger.PieceEnd(p.Events, lo, d.cfg.PieceEvents)
		if lo > 0 && d.cfg.Shards == 1 { // the first piece was looked up on arrival (lookedUpAtArrival)
			d.book.NeedsForTransfers(p.Events[lo:hi], &d.needs)
			d.prefetch()
		}
		before, awaits := len(d.fx.LegsOut), len(d.fx.Awaits)
		d.book.CreateTransfersPiece(now, p.Events, lo, hi, p.Results, d.fx)
		d.watchLegs(before, p)
		d.watchRepeats(awaits, p)
		if lo = hi; lo < len(p.Events) {
			d.betweenPieces()
		}
	}
	d.midPart = false
	for _, id := range p.denied {
		d.book.ForgetClaimedElsewhere(id)
	}
	d.parts = append(d.parts, p)
	for _, c := range p.claimed {
		owner := ledger.IDShard(c.ID, d.cfg.Shards)
		d.releases[owner] = append(d.releases[owner], c)
	}
}

// betweenPieces completes the rounds committing that are durable already (Host.Durable),
// oldest first, then seals the round gathered if there is room (room): the part's next
// pieces run while it commits. The part itself joins the round of its last piece,
// and is answered once that one is durable (rounds are durable in order). The book is not
// trimmed meanwhile (midPart): the part's next pieces need what was loaded for them
// (prefetch); nor does a Stop end the driver on a round with nothing gathered (seal).
func (d *Driver) betweenPieces() {
	for len(d.inflight) > 0 {
		r := d.inflight[0]
		if r.handled || !d.host.Durable(r) {
			break
		}
		if r.Err != nil {
			return // a failed commit is the host's to report (Committed): nothing more is sealed
		}
		r.handled = true
		d.completed(r)
	}
	if d.room() {
		d.seal()
	}
}

// watchLegs records the legs the last book call sent, so that their answers reach the
// request waiting on them and unanswered ones are sent again.
func (d *Driver) watchLegs(before int, p *TransfersPart) {
	if before == len(d.fx.LegsOut) {
		return
	}
	now := int64(d.cfg.Now())
	for _, l := range d.fx.LegsOut[before:] {
		if _, dup := d.waiting[l.LegKey]; dup {
			panic(fmt.Sprintf("driver: INVARIANT: shard %d: leg %+v made twice", d.cfg.Shard, l.LegKey))
		}
		w := waiter{index: l.Event, sent: d.ticks, round: d.gather, first: now, buffered: l.Buffered}
		if p != nil && l.Event >= 0 && !l.Buffered {
			w.part = p
			p.outstanding++
		}
		d.waiting[l.LegKey] = w
	}
}

// watchRepeats records the transfers of the last book call that repeat one whose leg is
// unanswered: they answer with it.
func (d *Driver) watchRepeats(before int, p *TransfersPart) {
	for _, a := range d.fx.Awaits[before:] {
		w, ok := d.waiting[a.LegKey]
		if !ok {
			panic(fmt.Sprintf("driver: INVARIANT: shard %d: a repeat waits for leg %+v, which nobody watches", d.cfg.Shard, a.LegKey))
		}
		w.repeats = append(w.repeats, repeat{part: p, index: a.Event})
		d.waiting[a.LegKey] = w
		p.outstanding++
	}
}

// prefetch loads from storage what the book said it needs.
func (d *Driver) prefetch() {
	must(d.store.Transfers(d.needs.Transfers, d.book.LoadTransfer))
	for _, id := range d.needs.Remote {
		info, found, err := d.store.AccountInfo(id)
		must(err)
		if found {
			d.book.LoadRemote(info)
		}
	}
	for _, k := range d.needs.Legs {
		r, found, err := d.store.LegResult(k)
		must(err)
		if found {
			d.book.LoadLegResult(ledger.LegResult{LegKey: k, Result: r})
		}
	}
	d.needs.Reset()
}

func must(err error) {
	if err != nil {
		panic(fmt.Sprintf("driver: storage read: %v", err))
	}
}

// seal ends the round being gathered and hands it to the host to commit, if it has anything.
func (d *Driver) seal() {
	if d.fx.Empty() && len(d.accounts) == 0 && len(d.parts) == 0 {
		if d.stopping && len(d.inflight) == 0 && !d.midPart { // a part's later pieces are to come
			d.stopped = true
		}
		return
	}
	d.fx.Freeze()
	r := &Round{Seq: d.gather, Effects: d.fx, Clock: d.book.Clock(), accounts: d.accounts, parts: d.parts,
		Durable: make(chan struct{}), releases: d.releases, forgetAcks: d.forgetAcks}
	d.forgetAcks = nil
	d.releases = make([][]ClaimRef, d.cfg.Shards)
	d.gather++
	if n := len(d.spares); n > 0 {
		d.fx, d.spares = d.spares[n-1], d.spares[:n-1]
	} else {
		d.fx = &ledger.Effects{}
	}
	d.accounts, d.parts = nil, nil
	if len(d.inflight) >= d.cfg.RoundsInFlight {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d: round %d sealed while %d commit", d.cfg.Shard, r.Seq, len(d.inflight)))
	}
	d.inflight = append(d.inflight, r)
	d.host.Commit(r)
}

// Committed takes a round's commit completion. A failed commit stops the driver: nothing of
// the round (or after it) is acknowledged, and the error says so; the process must restart
// and recover from storage, which holds the round or not.
func (d *Driver) Committed(r *Round) error {
	if r.handled || d.failed != nil {
		return d.failed
	}
	if len(d.inflight) == 0 || r != d.inflight[0] {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d: round %d completed, not the oldest of those committing (%v)", d.cfg.Shard, r.Seq, d.inflight))
	}
	r.handled = true
	if r.Err != nil {
		d.stats.StorageErrors.Add(1)
		d.failed = fmt.Errorf("shard %d: round %d not durable, nothing of it acknowledged: %w", d.cfg.Shard, r.Seq, r.Err)
		return d.failed
	}
	d.completed(r)
	return nil
}

// completed handles a durable round: send its legs and answers, hand answered legs to the
// requests that wait on them, reply, then seal the next round (or, when there is none, let
// the book trim itself: everything it knows is durable).
func (d *Driver) completed(r *Round) {
	if len(d.inflight) == 0 || r != d.inflight[0] {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d: round %d durable before the rounds sealed earlier", d.cfg.Shard, r.Seq))
	}
	d.inflight = append(d.inflight[:0], d.inflight[1:]...)
	d.durable = r.Seq
	// Before anything waiting is told: a drain that ends here finds the gauge as it is now.
	d.Gauges.Outbox.Store(int64(d.book.OutboxLen()))
	fx := r.Effects
	d.stats.Postings.Add(uint64(len(fx.Postings)))
	d.stats.Commits.Add(1)
	for _, f := range fx.Forget {
		d.forgetTo[f.To] = append(d.forgetTo[f.To], f.LegKey)
	}
	d.sendLegs(fx) // takes the forgets bound where legs go anyway
	if len(fx.Days) > 0 {
		d.daySwitched(fx.Days)
		d.Gauges.Buffered.Store(int64(d.bufferedLegs))
	}
	d.sendAnswers(fx)
	d.sendForgets()
	for _, f := range r.forgetAcks {
		d.host.Send(f.to, &ForgetAck{From: d.cfg.Shard, Seq: f.seq})
	}
	d.release(r.releases)
	for _, a := range fx.Answered {
		if len(d.drains) > 0 {
			d.answeredDrain(a.LegKey)
		}
		d.answerWaiters(a)
	}
	for _, p := range r.accounts {
		d.host.ReplyAccounts(p)
	}
	for _, p := range r.parts {
		p.committed = true
		if p.outstanding == 0 {
			d.replyTransfers(p)
		}
	}
	fx.Reset()
	d.spares = append(d.spares, fx)
	if d.room() {
		d.seal()
	}
	switch {
	case len(d.inflight) == 0 && d.midPart:
		// Nothing gathered between two pieces of a part: no trim (betweenPieces).
	case len(d.inflight) == 0:
		d.book.Trim()
		d.wait = d.stopping
	case d.stopping:
	case d.book.TrimNeeded():
		// Under a load that never pauses: the host completes the round just sealed before
		// anything else, so completing it finds the shard quiet and trims.
		d.wait = true
	default:
		d.wait = false
	}
}

// answerWaiters hands a durable answer to the request that sent the leg (a refusal becomes its
// transfer's result) and to those that repeated its transfer meanwhile (they answered exists,
// or now the same refusal).
func (d *Driver) answerWaiters(a ledger.LegResult) {
	w, ok := d.waiting[a.LegKey]
	if !ok {
		return
	}
	delete(d.waiting, a.LegKey)
	if w.part != nil {
		d.legAnswered(w.part, w.index, a.Result)
	}
	for _, r := range w.repeats {
		d.legAnswered(r.part, r.index, a.Result)
	}
}

func (d *Driver) legAnswered(p *TransfersPart, index int32, r ledger.TransferResult) {
	if r != ledger.ResultOK {
		p.Results[index] = r
	}
	if p.outstanding--; p.outstanding < 0 {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d: a part had more legs answered than it sent", d.cfg.Shard))
	}
	if p.committed && p.outstanding == 0 {
		d.replyTransfers(p)
	}
}

// replyTransfers answers a part, once.
func (d *Driver) replyTransfers(p *TransfersPart) {
	if p.answered {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d: a part answered twice", d.cfg.Shard))
	}
	p.answered = true
	d.host.ReplyTransfers(p)
}

func (d *Driver) sendLegs(fx *ledger.Effects) {
	for _, l := range fx.LegsOut {
		if l.Buffered {
			d.buffer(l)
			continue
		}
		to := ledger.ShardOf(l.Account, d.cfg.Shards)
		d.legsTo[to] = append(d.legsTo[to], l)
	}
	d.flushAlong()
	d.sendLegsTo()
	d.Gauges.Buffered.Store(int64(d.bufferedLegs))
}

func (d *Driver) sendAnswers(fx *ledger.Effects) {
	for _, r := range fx.LegsDone {
		d.answerTo[r.From] = append(d.answerTo[r.From], r)
	}
	for to, answers := range d.answerTo {
		if len(answers) > 0 {
			d.host.Send(uint32(to), &Answers{From: d.cfg.Shard, Answers: append([]ledger.LegResult(nil), answers...)})
			d.answerTo[to] = answers[:0]
		}
	}
}

// sendForgets tells credit shards which legs' answers a durable round took, for those that
// did not go with legs (sendLegsTo).
func (d *Driver) sendForgets() {
	for to, keys := range d.forgetTo {
		if len(keys) > 0 {
			d.forgetsSent[to]++
			f := &Forget{From: d.cfg.Shard, Seq: d.forgetsSent[to], Keys: append([]ledger.LegKey(nil), keys...)}
			d.trackForget(uint32(to), f.Seq, f.Keys)
			d.host.Send(uint32(to), f)
			d.forgetTo[to] = keys[:0]
		}
	}
}

// redeliver re-sends every outbox leg last sent at least age ticks ago (age 0: all of them,
// as after recovery). The credit shard applies each leg once, whatever the number of copies.
func (d *Driver) redeliver(age uint64) {
	d.book.Outbox(func(l ledger.Leg) {
		w, ok := d.waiting[l.LegKey]
		if ok && (d.ticks-w.sent < age || w.round > d.durable || w.buffered) {
			// answered soon, or its debit is not durable yet (never credit before that), or
			// its buffer has not sent it yet
			return
		}
		if !ok {
			w.first = int64(d.cfg.Now())
		}
		w.sent = d.ticks
		d.waiting[l.LegKey] = w
		l.Redelivered = true
		to := ledger.ShardOf(l.Account, d.cfg.Shards)
		d.legsTo[to] = append(d.legsTo[to], l)
		d.stats.Redelivered.Add(1)
	})
	d.sendLegsTo()
}

// sendLegsTo sends the legs gathered per credit shard, one message per shard, with the
// forgets bound there.
func (d *Driver) sendLegsTo() {
	for to, legs := range d.legsTo {
		if len(legs) > 0 {
			m := &Legs{From: d.cfg.Shard, Legs: append([]ledger.Leg(nil), legs...)}
			if keys := d.forgetTo[to]; len(keys) > 0 {
				d.forgetsSent[to]++
				m.Forget = append([]ledger.LegKey(nil), keys...)
				d.trackForget(uint32(to), d.forgetsSent[to], m.Forget)
				d.forgetTo[to] = keys[:0]
			}
			m.Stamp = d.forgetsSent[to]
			d.legsSent[to]++
			m.Seq = d.legsSent[to]
			d.host.Send(uint32(to), m)
			d.legsTo[to] = legs[:0]
		}
	}
}
