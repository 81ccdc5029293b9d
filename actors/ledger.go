// Package actors runs the ledger core on Proto.Actor: one actor per shard owns that shard's
// ledger.Book and storage writer, so every posting of an account is serialized without
// locks. It is the only package that knows about protoactor-go.
//
// A request is split by shard (the shard of each transfer's debit account), each part goes to
// its shard as one message, and the caller waits on a channel (never a future) for one reply
// per part. Replies come only after the round holding the part is durable and, for split
// transfers, after the credit legs were answered.
//
// With more than one shard, a new transfer id is claimed from the shard that arbitrates it
// (ledger.IDShard) before it is booked, so that two different transfers with one id sent to
// two shards at once cannot both be booked (ledger/driver/claims.go).
//
// Mailboxes are Proto.Actor's unbounded queues with explicit bounds in front: a shard admits
// at most ShardRequestsMax requests and ShardEventsMax accounts or transfers at once, counted
// from admission until the answer (past that, a request is refused whole with ErrOverloaded
// and nothing is written), and legs between shards are bounded by each shard's outbox limit
// (ledger.OutboxLegsMax). Proto.Actor's bounded mailbox would block the sender
// instead, and two shards sending each other legs could then block each other for good.
//
// Timestamps come from Config.Now, by default a clock that follows the wall clock but not a
// step of it past ClockSkewMax (clock.go): a shard's timestamps never go back, so a step
// forward that it followed would pin them in the future, in storage too. A restart anchors
// on the wall clock of that time; a shard whose stored clock is already further ahead than
// the bound keeps stamping one past it until the wall clock gets there, which Start reports
// (a warning and the skew gauge) without refusing to start.
package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ledgercore/ledger/internal/logging"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

// Defaults and limits of the actor layer (units last).
const (
	// ShardsDefault is the number of shards of a new store when none is configured. On a
	// 2-core machine one shard (with its committer goroutine) keeps both cores busy, and more
	// shards pay for split legs: ledger-bench measured 238k transfers/s with 1 shard and
	// 157k/s with 2 (bench/RESULTS.md). More shards pay off with more cores.
	ShardsDefault = 1
	// ShardRequestsMaxDefault is how many requests one shard admits at once (admitted and not
	// yet answered).
	ShardRequestsMaxDefault = 4096
	// ShardEventsMaxDefault is how many accounts or transfers one shard admits at once, so that
	// the memory held by requests waiting on a stalled shard stays bounded whatever their
	// size: 32 full requests, a few hundred MB at most.
	ShardEventsMaxDefault = 32 * ledger.BatchEventsMax
	// TickIntervalDefault is how often shards sweep expired holds and old outbox legs.
	TickIntervalDefault = 100 * time.Millisecond
	// RedeliverAfterTicksDefault is how many ticks an unanswered leg waits before it is sent
	// again.
	RedeliverAfterTicksDefault = 50
	// HotFlushIntervalDefault is how long a hot account's buffer waits for more legs before
	// it is sent (the delay before a buffered inflow is posted and spendable).
	HotFlushIntervalDefault = 10 * time.Millisecond
	// HotBufferLegsMaxDefault is how many legs a hot account's buffer holds before it is sent
	// at once.
	HotBufferLegsMaxDefault = ledger.BatchEventsMax
	// StopDrainTimeoutDefault bounds how long Stop waits for split transfers' credit legs
	// (buffered ones included) to be answered; what is left is re-sent on recovery.
	StopDrainTimeoutDefault = 10 * time.Second
	// ClockSkewMaxDefault is how far the wall clock may move from the monotonic clock's
	// projection between two readings (a tick apart at most) and still be followed. NTP slews
	// by at most 0.5 ms/s (ntpd; chrony at most 83 ms/s): under 10 ms a tick, far below.
	// NTP's own steps are small (ntpd steps offsets over 128 ms, chrony's makestep is
	// usually 1 s) and are followed. A step further is an incident (a wrong RTC, a wrong
	// manual date, a bad time source), and what a step within the bound can do when it is
	// followed and undone is bounded by it: timestamps pinned and expiries off by 5 s at most.
	ClockSkewMaxDefault = 5 * time.Second
)

// ErrOverloaded: a shard has as many requests as it admits; nothing of the request was run.
var ErrOverloaded = errors.New("actors: shard overloaded, retry later")

// ErrStopped: the ledger is stopping or stopped.
var ErrStopped = errors.New("actors: ledger stopped")

// Observer takes one observation (a Prometheus histogram satisfies it).
type Observer interface{ Observe(float64) }

type nopObserver struct{}

func (nopObserver) Observe(float64) {}

// Config configures a Ledger.
type Config struct {
	Shards              uint32
	ShardRequestsMax    int
	ShardEventsMax      int
	TickInterval        time.Duration
	RedeliverAfterTicks uint64
	// HotFlushInterval and HotBufferLegsMax: when a hot account's buffer is sent (see
	// ledger/driver/hot.go).
	HotFlushInterval time.Duration
	HotBufferLegsMax int
	// PieceEvents: the pieces a shard runs a large request's transfers in (driver.Config; 0:
	// driver.PieceEventsDefault).
	PieceEvents int
	// RoundsInFlight: how many sealed rounds a shard commits at once (driver.Config; 0:
	// driver.RoundsInFlightDefault).
	RoundsInFlight int
	// StopDrainTimeout bounds how long Stop waits for credit legs to be answered.
	StopDrainTimeout time.Duration
	// Now returns the time in Unix nanoseconds (tests give a fake clock). nil: the wall
	// clock, guarded against steps past ClockSkewMax (clock.go).
	Now func() uint64
	// ClockSkewMax is how far the wall clock may move from the monotonic clock between two
	// readings and still be followed; a larger step is not followed but reported
	// (Stats.ClockSkewNanos, Stats.ClockJumps) until the wall clock comes back within it. A
	// restart anchors on the wall clock of that time, so a correct large step is taken by
	// restarting. The stored clock is not: Book.tick keeps each shard's timestamps above it,
	// so a store whose clock is further ahead than this keeps stamping one past it until the
	// wall clock gets there; Start logs a warning and sets the skew gauge, and starts anyway
	// (the ledger must stay available). Unused when Now is given, except for that check.
	ClockSkewMax time.Duration
	// clockSource: tests give fake wall and monotonic clocks to the guard (nil: the machine's).
	clockSource driver.ClockSource
	// Fatal is called once when a shard meets a broken invariant or a storage error; it must
	// stop the process (the default logs and exits with status 70). Tests may record instead.
	Fatal func(error)
	// TransferCacheEntriesMax bounds the finished transfers each shard keeps in memory
	// (0: ledger.TransferCacheEntriesMax); older ones are read back from storage.
	TransferCacheEntriesMax int
	// Events takes every durable round that has events, before anything of it is answered
	// (the event stream's sequencer); nil: none.
	Events EventSink
	// FirstDay is the accounting day a store without days starts on (a new store, or one
	// older than days); 0: the UTC date of the wall clock at that start. A store that has
	// days keeps its own.
	FirstDay ledger.Day
	// CommitSeconds and CommitPostings observe each round's commit latency and size;
	// HotFlushLegs observes the legs of each hot-account buffer sent.
	CommitSeconds, CommitPostings, HotFlushLegs Observer
}

func (c *Config) setDefaults() {
	orDefault(&c.Shards, ShardsDefault)
	orDefault(&c.ShardRequestsMax, ShardRequestsMaxDefault)
	orDefault(&c.ShardEventsMax, ShardEventsMaxDefault)
	orDefault(&c.TickInterval, TickIntervalDefault)
	orDefault(&c.RedeliverAfterTicks, RedeliverAfterTicksDefault)
	orDefault(&c.HotFlushInterval, HotFlushIntervalDefault)
	orDefault(&c.HotBufferLegsMax, HotBufferLegsMaxDefault)
	orDefault(&c.StopDrainTimeout, StopDrainTimeoutDefault)
	orDefault(&c.ClockSkewMax, ClockSkewMaxDefault) // Now's default is set by Start (startClock)
	if c.Fatal == nil {
		c.Fatal = func(err error) {
			slog.Error("ledger stopped: shard failed; restart recovers from storage", "err", err)
			os.Exit(70)
		}
	}
	orDefault[Observer](&c.CommitSeconds, nopObserver{})
	orDefault[Observer](&c.CommitPostings, nopObserver{})
	orDefault[Observer](&c.HotFlushLegs, nopObserver{})
}

// EventSink takes committed rounds for the event stream (events.Sequencer).
type EventSink interface {
	// Capturing reports whether Committed wants the round's events (someone follows).
	Capturing() bool
	// Begin is called before a round's commit starts; its answer goes to Committed.
	Begin() uint64
	// Committed takes a durable round, in the log's commit order.
	Committed(lr storage.LogRound, mark uint64, ev *storage.RoundEvents)
	// CommittedLedger is Committed for a ledger shard's round: its transfer records and
	// postings, read only during the call (the sink encodes them while someone follows).
	CommittedLedger(lr storage.LogRound, mark uint64, ts []ledger.Transfer, ps []ledger.Posting)
}

// publish hands a durable round to the event sink.
func publish(sink EventSink, lr storage.LogRound, mark uint64, fx *ledger.Effects) {
	if sink == nil || lr.Events == 0 {
		return
	}
	sink.CommittedLedger(lr, mark, fx.Transfers, fx.Postings)
}

// orDefault sets *v to d when *v is the zero value.
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Stats are the actor layer's counters, read by the metrics adapter.
type Stats struct {
	// Counters are the shard drivers' (commits, postings, legs sent again, hot-account
	// flushes by reason, failed commits, claims sent again, stale legs dropped).
	driver.Counters
	Unexpected atomic.Uint64 // messages of an unknown type
	// ClockStats are the guarded clock's: the skew it does not follow, and the steps.
	driver.ClockStats
}

// Ledger is the running ledger: the shard actors over one store.
type Ledger struct {
	cfg    Config
	store  *storage.Store
	system *actor.ActorSystem
	pids   []*actor.PID
	// dispatchers: each shard's mailbox runs on a goroutine of its own (dispatcher.go).
	dispatchers []*ownGoroutine
	shards      []*shard
	admitted    []driver.Admission // what each shard admitted and has not answered yet
	stats       Stats
	stopped     atomic.Bool
	active      sync.WaitGroup // requests in flight
	ticker      *time.Ticker
	tickEnd     chan struct{}
	once        sync.Once
	drainIDs    atomic.Uint64 // names each drain, for its cancel
}

// Start recovers every shard from the store and starts the shard actors.
func Start(store *storage.Store, cfg Config) (*Ledger, error) {
	cfg.setDefaults()
	if cfg.Shards != store.Shards() {
		return nil, fmt.Errorf("actors: %d shards over a store of %d", cfg.Shards, store.Shards())
	}
	first := cfg.FirstDay
	if first != 0 && (!first.Valid() || !first.Next().Valid()) {
		return nil, fmt.Errorf("actors: first accounting day %v: a date from %v to %v (a day with a next day)", uint32(first), ledger.DayMin, ledger.DayMax.Prev())
	}
	if first == 0 {
		first = ledger.DayOfUnix(time.Now().Unix())
	}
	if err := store.InitDays(first); err != nil {
		return nil, err
	}
	books, err := driver.Recover(store.Live(), cfg.Shards)
	if err != nil {
		return nil, err
	}
	cacheMax := cfg.TransferCacheEntriesMax
	if cacheMax <= 0 {
		cacheMax = ledger.TransferCacheEntriesMax
	}
	for _, b := range books {
		b.SetCacheLimit(cacheMax) // and sizes its cache's index for it
	}
	l := &Ledger{cfg: cfg, store: store, admitted: make([]driver.Admission, cfg.Shards), tickEnd: make(chan struct{})}
	l.startClock(books)
	// Proto.Actor logs its routine events (the system started, dead letters) at info: they go
	// to the process's log at debug level, its errors as errors.
	l.system = actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(logging.Demote(slog.Default().Handler())).With("component", "protoactor")
	}))
	l.pids = make([]*actor.PID, cfg.Shards)
	l.dispatchers = make([]*ownGoroutine, cfg.Shards)
	l.shards = make([]*shard, cfg.Shards)
	for i := range books {
		s := newShard(l, uint32(i), books[i])
		l.shards[i] = s
		l.dispatchers[i] = newOwnGoroutine()
		props := actor.PropsFromProducer(func() actor.Actor { return s },
			actor.WithMailbox(actor.Unbounded()), actor.WithDispatcher(l.dispatchers[i]))
		l.pids[i] = l.system.Root.Spawn(props)
		s.self = l.pids[i]
		go s.committer(store.Writer(uint32(i)))
	}
	for _, pid := range l.pids {
		l.system.Root.Send(pid, recoverMessage{})
	}
	l.ticker = time.NewTicker(cfg.TickInterval)
	go l.tickLoop()
	return l, nil
}

func (l *Ledger) tickLoop() {
	for {
		select {
		case <-l.ticker.C:
			now := l.cfg.Now()
			for _, pid := range l.pids {
				l.system.Root.Send(pid, tickMessage{now: now})
			}
		case <-l.tickEnd:
			return
		}
	}
}

func (l *Ledger) fatal(err error) {
	l.once.Do(func() { l.cfg.Fatal(err) })
}

// Shards is the number of shards.
func (l *Ledger) Shards() uint32 { return l.cfg.Shards }

// Stats are the ledger's counters.
func (l *Ledger) Stats() *Stats { return &l.stats }

// AdmittedRequests is the number of requests a shard admitted and has not answered yet.
func (l *Ledger) AdmittedRequests(shard int) int64 { return l.admitted[shard].Requests() }

// AdmittedEvents is the number of accounts and transfers a shard admitted and has not answered.
func (l *Ledger) AdmittedEvents(shard int) int64 { return l.admitted[shard].Events() }

// OutboxLegs is the number of a shard's unanswered legs after its last round.
func (l *Ledger) OutboxLegs(shard int) int64 { return l.shards[shard].d.Gauges.Outbox.Load() }

// BufferedLegs is the number of legs in a shard's hot-account buffers, not yet sent.
func (l *Ledger) BufferedLegs(shard int) int64 { return l.shards[shard].d.Gauges.Buffered.Load() }

// OutboxOldest is when a shard's oldest unanswered leg was first sent, as of its last tick
// (zero when it has none).
func (l *Ledger) OutboxOldest(shard int) time.Time {
	ns := l.shards[shard].d.Gauges.Oldest.Load()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// TransitBalances sums, per ledger, credits minus debits posted over the transit accounts of
// every shard: the money of split transfers between their legs, as durable now.
func (l *Ledger) TransitBalances() (map[uint32]*big.Int, error) {
	out := map[uint32]*big.Int{}
	err := l.Read(func(v *storage.Reader) error {
		return v.ForEachTransitAccount(func(a ledger.Account) error {
			if out[a.Ledger] == nil {
				out[a.Ledger] = new(big.Int)
			}
			out[a.Ledger].Add(out[a.Ledger], a.CreditsPosted.WrapSub(a.DebitsPosted).Signed())
			return nil
		})
	})
	return out, err
}

// Read runs fn on a consistent snapshot of the store in which everything is durable
// (storage.Store.DurableSnapshot): what a client reads is never undone by a crash. Stop
// waits for reads in flight (the caller closes the store after it); a read after Stop
// returns ErrStopped.
func (l *Ledger) Read(fn func(v *storage.Reader) error) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.active.Done()
	v, err := l.store.DurableSnapshot()
	if err != nil {
		return err
	}
	return errors.Join(fn(v), v.Close())
}

// Backup writes a consistent copy of the store into dir, while the ledger serves
// (storage.Store.Backup).
func (l *Ledger) Backup(dir string) (storage.BackupInfo, error) {
	if err := l.enter(); err != nil {
		return storage.BackupInfo{}, err
	}
	defer l.active.Done()
	return l.store.Backup(dir)
}

// StorageStats are the storage engine's figures.
func (l *Ledger) StorageStats() storage.Stats { return l.store.Stats() }

// admit reserves room in each shard a request needs (driver.Admit).
func (l *Ledger) admit(events []int) bool {
	return driver.Admit(l.admitted, events, int64(l.cfg.ShardRequestsMax), int64(l.cfg.ShardEventsMax))
}

func (l *Ledger) enter() error {
	l.active.Add(1)
	if l.stopped.Load() {
		l.active.Done()
		return ErrStopped
	}
	return nil
}

// CreateAccounts opens accounts. results[i] answers as[i].
func (l *Ledger) CreateAccounts(as []ledger.Account) ([]ledger.AccountResult, error) {
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.active.Done()
	r := newRequest[ledger.Account, ledger.AccountResult](l, len(as))
	for i := range as {
		r.add(driver.AccountShard(as[i].ID, l.cfg.Shards), as[i], i)
	}
	return r.run(l)
}

// CreateTransfers runs transfers, each on the shard of its debit account. results[i]
// answers ts[i]. A linked chain whose debit accounts live on several shards is refused:
// its first member on another shard answers linked_chain_spans_shards, the rest
// linked_event_failed.
func (l *Ledger) CreateTransfers(ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	if err := l.enter(); err != nil {
		return nil, err
	}
	defer l.active.Done()
	r := newRequest[ledger.Transfer, ledger.TransferResult](l, len(ts))
	driver.RouteTransfers(ts, l.cfg.Shards, r.results, func(s uint32, i int) { r.add(s, ts[i], i) })
	return r.run(l)
}

// request is one CreateAccounts or CreateTransfers call on its way through the shards.
type request[E, R any] struct {
	parts   []*driver.Part[E, R]
	events  []int // per shard
	done    chan *driver.Part[E, R]
	results []R
	perPart int // the capacity a part starts with: all events with one shard, a share with more
}

func newRequest[E, R any](l *Ledger, events int) *request[E, R] {
	perPart := events
	if l.cfg.Shards > 1 {
		perPart = events/int(l.cfg.Shards) + events/8 + 1
	}
	return &request[E, R]{parts: make([]*driver.Part[E, R], l.cfg.Shards), events: make([]int, l.cfg.Shards),
		done: make(chan *driver.Part[E, R], l.cfg.Shards), results: make([]R, events), perPart: perPart}
}

// add puts the event at position i of the request into shard s's part.
func (r *request[E, R]) add(s uint32, e E, i int) {
	p := r.parts[s]
	if p == nil {
		p = &driver.Part[E, R]{Done: r.done, Events: make([]E, 0, r.perPart), Index: make([]int32, 0, r.perPart)}
		r.parts[s] = p
	}
	r.events[s]++
	p.Events = append(p.Events, e)
	p.Index = append(p.Index, int32(i))
}

// run admits the request to every shard it needs (all or none), sends each shard its part,
// and gathers the results as the parts come back.
func (r *request[E, R]) run(l *Ledger) ([]R, error) {
	if !l.admit(r.events) {
		return nil, ErrOverloaded
	}
	n := 0
	for s, p := range r.parts {
		if p != nil {
			p.Results = make([]R, len(p.Events))
			l.system.Root.Send(l.pids[s], p)
			n++
		}
	}
	for ; n > 0; n-- {
		p := <-r.done
		for k, i := range p.Index {
			r.results[i] = p.Results[k]
		}
	}
	return r.results, nil
}

// Drain sends every hot-account buffer now and waits until each credit leg that was
// unanswered when it was called (buffered or not) has been answered: applied, or refused and
// released. Under a load that never pauses new legs keep coming, and Drain waits only for the
// old ones. It returns ctx's error if ctx ends first. End of day drains before its cut.
func (l *Ledger) Drain(ctx context.Context) error {
	if err := l.enter(); err != nil {
		return err
	}
	defer l.active.Done()
	return l.drain(ctx)
}

func (l *Ledger) drain(ctx context.Context) error {
	id := l.drainIDs.Add(1)
	dones := make([]chan struct{}, len(l.pids))
	for i, pid := range l.pids {
		dones[i] = make(chan struct{})
		l.system.Root.Send(pid, drainMessage{id: id, done: dones[i]})
	}
	for _, done := range dones {
		select {
		case <-done:
		case <-ctx.Done():
			// The shards forget the drain (each after its drainMessage: one sender's
			// messages arrive in order), not holding its legs' keys until they are answered.
			for _, pid := range l.pids {
				l.system.Root.Send(pid, cancelDrainMessage{id: id})
			}
			return ctx.Err()
		}
	}
	return nil
}

// DrainsWaiting is how many drains a shard holds, waiting for legs.
func (l *Ledger) DrainsWaiting(shard int) int64 { return l.shards[shard].d.Gauges.Drains.Load() }

// SwitchDay switches every shard to accounting day day (ledger.Book.SwitchDay), each at its
// place in its own stream, and returns once every switch is durable. Transfers keep flowing:
// those a shard runs before its switch are of the day before, those after of day. A shard
// already on day (or later) switches nothing. It returns ctx's error if ctx ends first.
func (l *Ledger) SwitchDay(ctx context.Context, day ledger.Day) error {
	if !day.Valid() {
		return fmt.Errorf("actors: switch to %v: not a date from %v to %v", uint32(day), ledger.DayMin, ledger.DayMax)
	}
	if err := l.enter(); err != nil {
		return err
	}
	defer l.active.Done()
	dones := make([]chan struct{}, len(l.pids))
	for i, pid := range l.pids {
		dones[i] = make(chan struct{})
		l.system.Root.Send(pid, switchDayMessage{day: day, done: dones[i]})
	}
	for i, done := range dones {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("actors: shard %d did not switch to %v: %w", i, day, ctx.Err())
		}
	}
	return nil
}

// Stop refuses new requests and reads, waits for those in flight, flushes the hot-account buffers and
// waits (at most StopDrainTimeout) for the credit legs in flight, lets every shard finish and
// commit its round, and stops the actors. Legs still unanswered stay in the outboxes and are
// re-sent on recovery. The store stays open (the caller closes it).
func (l *Ledger) Stop() {
	if l.stopped.Swap(true) {
		return
	}
	l.active.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.StopDrainTimeout)
	if err := l.drain(ctx); err != nil {
		slog.Warn("stop: credit legs still unanswered; recovery re-sends them", "err", err)
	}
	cancel()
	l.ticker.Stop()
	close(l.tickEnd)
	for _, pid := range l.pids {
		done := make(chan struct{})
		l.system.Root.Send(pid, &stopMessage{done: done})
		<-done
	}
	for i, pid := range l.pids {
		if err := l.system.Root.StopFuture(pid).Wait(); err != nil {
			slog.Warn("stop: shard actor did not confirm", "shard", i, "err", err)
		}
		l.dispatchers[i].close()
	}
	l.system.Shutdown()
}
