// Package sim runs the ledger's shard drivers (ledger/driver) deterministically: every shard of
// a node on one goroutine, over real storage (Pebble on an in-memory, crashable file system),
// with a simulated network, committer and clock, and one seed deciding everything: which
// message is delayed, reordered, duplicated or lost; when a commit is slow or fails; when the
// power is cut; when the wall clock steps. The same seed replays the same run exactly.
//
// The workload and the oracle are internal/simulation's: the same harness also drives the real
// actors (actors.TestSimulation), concurrently and so without exact replay.
package sim

import (
	"cmp"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/internal/simulation"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

// Faults says which faults a run injects, and how often.
type Faults struct {
	// Network: messages between shards are delayed by up to netDelayMax (so reordered), and
	// each is lost or duplicated with probability netLossPct and netDupPct percent.
	Network bool
	// Crashes: the power is cut at a random event, with probability crashPerMillion per
	// million events (on top of the harness's own cuts).
	Crashes bool
	// Storage: a commit fails (before or after its write reached the disk), with probability
	// commitErrorPerMille per mille per commit: the process stops and recovers.
	Storage bool
	// Clock: the wall clock steps forward or back past the guard's bound at random events.
	Clock bool
	// Slow: one commit in ten takes up to slowCommitMax instead of commitTimeMin to
	// commitTimeMax.
	Slow bool
}

// AllFaults turns on every fault kind.
var AllFaults = Faults{Network: true, Crashes: true, Storage: true, Clock: true, Slow: true}

// The simulated world's figures.
const (
	shards              = 3
	tickInterval        = 5 * time.Millisecond
	redeliverAfterTicks = 20
	commitTimeMin       = 100 * time.Microsecond // a commit's time, without slow commits
	commitTimeMax       = 3 * time.Millisecond
	slowCommitMax       = 80 * time.Millisecond
	netDelay            = 50 * time.Microsecond
	netDelayMax         = 30 * time.Millisecond
	netLossPct          = 3
	netDupPct           = 5
	commitErrorPerMille = 4
	clockStepPerMille   = 2
	drainPerMille       = 1 // an operator's Drain (end of day), at a random event
	clockSkewMax        = 2 * time.Second
	hotFlushInterval    = 15 * time.Millisecond
	hotBufferLegsMax    = 3
	requestsMax         = 3
	eventsMax           = 48
	cacheEntriesMax     = 64
	// awaitSpan bounds Await and a request's wait, in simulated time: far more than any
	// re-delivery needs (redeliverAfterTicks ticks is 100 ms).
	awaitSpan = 120 * time.Second
)

// Cluster is one node: its shard drivers over one store, with everything around them
// simulated. It implements simulation.System.
type Cluster struct {
	seed        int64
	rng         *rand.Rand
	pieceEvents int // the drivers' Config.PieceEvents
	faults      Faults
	fs          *vfs.MemFS
	store       *storage.Store
	hosts       []*host
	// admitted: what each shard admitted and has not answered (driver.Admit).
	admitted []driver.Admission
	counters driver.Counters
	clocks   driver.ClockStats
	guard    *driver.Clock

	// Time. The scheduler's clock (sched) orders events: delays, ticks, timers. The ledger's
	// clock is separate and moves only when the harness advances it (between requests, so
	// that the oracle knows the time each request ran at) or when a fault steps the wall clock.
	sched      time.Duration
	ledgerMono time.Duration // the ledger's monotonic clock
	drift      time.Duration // the wall clock's steps within the guard's bound (followed), in total
	wallStep   time.Duration // the wall clock's step past the bound now (not followed), or 0
	queue      []event
	seq        uint64
	epoch      int // bumped at each crash: events of an earlier epoch are dropped

	// The parts in flight, and the requests they belong to.
	transferParts map[*driver.TransfersPart]*request
	accountParts  map[*driver.AccountsPart]*request
	drainsOpen    int // drains of this epoch not finished
	trace         hash.Hash64
	stats         Stats
	failure       error // a broken invariant (a panic in a driver): the run fails
	fail          func(format string, args ...any)
}

// Stats are what a run injected and saw.
type Stats struct {
	Events, Sent, Lost, Duplicated, SlowCommits, CommitErrors, ClockSteps, Drains int
	// Crashes: power cuts the cluster injected; Restarts: after a failed commit; Cuts: power
	// cuts the harness asked for.
	Crashes, Restarts, Cuts int
	// EarlyCommits: rounds a driver completed between two pieces of a part (host.Durable).
	EarlyCommits int
}

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New opens a new cluster for seed with the given faults; fail reports a broken invariant
// (a panic in a driver, a failed recovery) and must stop the run.
func New(seed int64, faults Faults, fail func(format string, args ...any)) (*Cluster, error) {
	c := &Cluster{seed: seed, rng: rand.New(rand.NewPCG(uint64(seed), 0x5eed)), faults: faults,
		fs: vfs.NewCrashableMem(), trace: fnv.New64a(), fail: fail,
		transferParts: map[*driver.TransfersPart]*request{}, accountParts: map[*driver.AccountsPart]*request{}}
	// Parts run in pieces of 1 to 4 transfers, or whole (one seed in five).
	if c.pieceEvents = 1 + c.rng.IntN(5); c.pieceEvents == 5 {
		c.pieceEvents = -1
	}
	quiet := slog.New(slog.DiscardHandler)
	c.guard = driver.NewClock(func() (time.Time, time.Duration) {
		return clockBase.Add(c.ledgerMono + c.drift + c.wallStep), c.ledgerMono
	}, clockSkewMax, &c.clocks, quiet)
	if err := c.open(); err != nil {
		return nil, err
	}
	return c, nil
}

// Stats are what the run injected so far.
func (c *Cluster) Stats() Stats { return c.stats }

// Trace is a hash of every event the run handled, in order: two runs of one seed must agree.
func (c *Cluster) Trace() uint64 { return c.trace.Sum64() }

// open opens the store on the file system and starts a driver per shard on what it recovers.
func (c *Cluster) open() error {
	store, err := storage.Open("db", storage.Options{FS: c.fs, Shards: shards, CacheBytes: 1 << 20,
		PostingTailMax: simPostingTailMax, PagingAccountsPerRound: 4})
	if err != nil {
		return err
	}
	books, err := driver.Recover(store.Live(), shards)
	if err != nil {
		return errors.Join(err, store.Close())
	}
	c.store = store
	c.admitted = make([]driver.Admission, shards)
	c.hosts = make([]*host, shards)
	for i, b := range books {
		b.SetCacheLimit(cacheEntriesMax)
		h := &host{c: c, shard: uint32(i), w: store.Writer(uint32(i)), prepared: map[*driver.Round]*storage.Prepared{}}
		h.d = driver.New(driver.Config{Shard: uint32(i), Shards: shards, Now: c.guard.Now,
			RedeliverAfterTicks: redeliverAfterTicks, HotFlushInterval: hotFlushInterval,
			HotBufferLegsMax: hotBufferLegsMax, Counters: &c.counters, PieceEvents: c.pieceEvents}, h, store.Live(), b)
		c.hosts[i] = h
	}
	c.schedule(tickInterval, event{kind: evTick})
	for _, h := range c.hosts {
		h.input(func() { h.d.Recover() })
	}
	return nil
}

// Events.

type eventKind uint8

const (
	evTick eventKind = iota
	evDeliver
	evWake
	evCommit
	evHotFlush
)

type event struct {
	at    time.Duration
	seq   uint64
	epoch int
	kind  eventKind
	shard uint32
	m     driver.Message
	r     *driver.Round
	gen   uint64 // evHotFlush: the timer's generation (a re-armed timer replaces the old one)
}

func (c *Cluster) schedule(after time.Duration, e event) {
	c.seq++
	e.at, e.seq, e.epoch = c.sched+after, c.seq, c.epoch
	i, _ := slices.BinarySearchFunc(c.queue, e, func(x, y event) int {
		return cmp.Or(cmp.Compare(x.at, y.at), cmp.Compare(x.seq, y.seq))
	})
	c.queue = slices.Insert(c.queue, i, e)
}

// step handles the next event.
func (c *Cluster) step() {
	e := c.queue[0]
	c.queue = c.queue[1:]
	if e.epoch != c.epoch {
		return // sent before a crash: lost with the process
	}
	c.sched = e.at
	c.stats.Events++
	fmt.Fprintf(c.trace, "%d %d %d %d;", e.at, e.kind, e.shard, e.seq)
	if c.faults.Clock && c.rng.IntN(1000) < clockStepPerMille {
		c.stepClock()
	}
	if c.rng.IntN(1000) < drainPerMille {
		c.drain()
	}
	switch e.kind {
	case evTick:
		now := c.guard.Now()
		for _, h := range c.hosts {
			h.input(func() { h.d.Tick(now) })
		}
		c.schedule(tickInterval, event{kind: evTick})
	case evDeliver:
		h := c.hosts[e.shard]
		fmt.Fprintf(c.trace, "%T from %d;", e.m, driver.Sender(e.m))
		h.input(func() { h.d.Receive(e.m) })
	case evWake:
		h := c.hosts[e.shard]
		h.input(h.d.Wake)
	case evCommit:
		h := c.hosts[e.shard]
		h.input(func() { h.commit(e.r) })
	case evHotFlush:
		h := c.hosts[e.shard]
		if e.gen == h.timerGen {
			h.input(h.d.HotFlush)
		}
	}
}

// stepClock steps the wall clock, at any event, forward or back past the guard's bound (or
// back to true time): the ledger's clock must not follow. The steps never add up to one within
// the bound, which the guard would follow in the middle of a request; those come only with
// Advance.
func (c *Cluster) stepClock() {
	c.stats.ClockSteps++
	if c.wallStep != 0 && c.rng.IntN(2) == 0 {
		c.wallStep = 0 // back to true time: followed again
		return
	}
	step := clockSkewMax + 1 + time.Duration(c.rng.Int64N(int64(time.Hour)))
	if c.rng.IntN(2) == 0 {
		step = -step
	}
	c.wallStep = step
}

// drain asks every shard to send its hot-account buffers and to report when every leg
// unanswered now has been answered (what end of day does before its cut).
func (c *Cluster) drain() {
	c.stats.Drains++
	for _, h := range c.hosts {
		c.drainsOpen++
		epoch := c.epoch
		id := uint64(c.stats.Drains)
		h.input(func() {
			h.d.Drain(id, func() {
				if c.epoch == epoch {
					c.drainsOpen--
				}
			})
		})
	}
}

// The network.

func (c *Cluster) send(from, to uint32, m driver.Message) {
	c.stats.Sent++
	copies := 1
	delay := netDelay
	if c.faults.Network {
		switch r := c.rng.IntN(100); {
		case r < netLossPct:
			c.stats.Lost++
			return
		case r < netLossPct+netDupPct:
			c.stats.Duplicated++
			copies = 2
		}
	}
	for range copies {
		if c.faults.Network {
			delay = time.Duration(c.rng.Int64N(int64(netDelayMax)))
		}
		c.schedule(delay, event{kind: evDeliver, shard: to, m: m})
	}
}

// host is one shard's driver host: its committer, timer and network are the cluster's. As
// the actors' committer does, it writes a round's batch when the round is sealed
// (storage.Writer.Prepare) and commits it (Finish) when its commit comes due, in order.
type host struct {
	c        *Cluster
	shard    uint32
	d        *driver.Driver
	w        *storage.Writer
	timerGen uint64
	prepared map[*driver.Round]*storage.Prepared // sealed rounds, not committed yet
	commitAt time.Duration                       // when the last round sealed comes due
}

// input hands the driver one input, then completes the rounds it must see durable first
// (driver.Driver.Wait). A panic is a broken invariant: the run fails.
func (h *host) input(fn func()) {
	if h.c.failure != nil {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			h.c.failure = fmt.Errorf("shard %d: %v", h.shard, r)
		}
	}()
	epoch := h.c.epoch
	fn()
	for r := h.d.Wait(); r != nil && h.c.epoch == epoch; r = h.d.Wait() {
		h.commit(r)
	}
}

func (h *host) Send(to uint32, m driver.Message) { h.c.send(h.shard, to, m) }

func (h *host) Commit(r *driver.Round) {
	if p, err := h.w.Prepare(r.Effects, r.Clock); err != nil {
		r.Err = err
	} else {
		h.prepared[r] = p
	}
	d := commitTimeMin + time.Duration(h.c.rng.Int64N(int64(commitTimeMax-commitTimeMin)))
	if h.c.faults.Slow && h.c.rng.IntN(10) == 0 {
		h.c.stats.SlowCommits++
		d = time.Duration(h.c.rng.Int64N(int64(slowCommitMax)))
	}
	// Rounds commit in the order they were sealed: none comes due before the one before it.
	h.commitAt = max(h.c.sched+d, h.commitAt)
	h.c.schedule(h.commitAt-h.c.sched, event{kind: evCommit, shard: h.shard, r: r})
}

// finish commits r's prepared batch (Writer.Finish), once.
func (h *host) finish(r *driver.Round) error {
	p, ok := h.prepared[r]
	if !ok {
		panic(fmt.Sprintf("sim: shard %d: round %d committed twice, or never prepared", h.shard, r.Seq))
	}
	delete(h.prepared, r)
	return h.w.Finish(p)
}

func (h *host) Wake() { h.c.schedule(0, event{kind: evWake, shard: h.shard}) }

// Durable: asked between two pieces of a part, the round's commit is now and then (one ask in
// earlyCommitOneIn) done at once, as if the committer had just finished it, with no fault
// injected: the driver completes the round then, and its scheduled commit finds it done.
func (h *host) Durable(r *driver.Round) bool {
	if r.Closed() {
		return true
	}
	if r.Err != nil || h.c.rng.IntN(earlyCommitOneIn) != 0 {
		return false
	}
	if err := h.finish(r); err != nil {
		h.c.failure = fmt.Errorf("shard %d: commit: %w", h.shard, err)
		return false
	}
	h.c.stats.EarlyCommits++
	close(r.Durable)
	return true
}

// earlyCommitOneIn: host.Durable does one ask in this many's commit at once.
const earlyCommitOneIn = 3

func (h *host) ArmHotFlush(d time.Duration) {
	h.timerGen++
	h.c.schedule(d, event{kind: evHotFlush, shard: h.shard, gen: h.timerGen})
}

// commit writes a round, as the committer would, unless a fault says otherwise, and reports
// it. A failed commit stops the process: the driver refuses to go on (driver.Committed's
// error) and the cluster restarts from what storage holds, the failed round or not.
func (h *host) commit(r *driver.Round) {
	c := h.c
	if r.Closed() {
		// Committed already: the driver asked for it early (Wait), or it was written early
		// (Durable, never with an error) and the driver completed it between two pieces.
		return
	}
	if r.Err != nil {
		// Prepare failed: nothing was written.
	} else if c.faults.Storage && c.rng.IntN(1000) < commitErrorPerMille {
		c.stats.CommitErrors++
		if c.rng.IntN(2) == 0 {
			// The write reached the disk but the sync reported an error: durable, unacknowledged.
			if err := h.finish(r); err != nil {
				c.failure = err
				return
			}
		}
		r.Err = errors.New("sim: injected write error")
	} else if err := h.finish(r); err != nil {
		r.Err = err
	}
	close(r.Durable)
	if err := h.d.Committed(r); err != nil {
		if r.Err == nil || !errors.Is(err, r.Err) {
			c.failure = fmt.Errorf("shard %d: commit reported %v, driver said %v", h.shard, r.Err, err)
			return
		}
		c.restart()
	}
}

// Requests.

// request is one CreateTransfers or CreateAccounts in flight.
type request struct {
	epoch    int
	parts    int // parts not answered yet
	results  []ledger.TransferResult
	aresults []ledger.AccountResult
}

func (h *host) ReplyAccounts(p *driver.AccountsPart) {
	r := answered(h, p, h.c.accountParts)
	copyResults(r.aresults, p)
}

func (h *host) ReplyTransfers(p *driver.TransfersPart) {
	r := answered(h, p, h.c.transferParts)
	copyResults(r.results, p)
	fmt.Fprintf(h.c.trace, "%v;", p.Results)
}

// answered takes a part's answer: its shard's admission is given back, and its request waits
// for one part fewer.
func answered[E, R any](h *host, p *driver.Part[E, R], parts map[*driver.Part[E, R]]*request) *request {
	h.c.admitted[h.shard].Done(len(p.Events))
	r := parts[p]
	delete(parts, p)
	r.parts--
	fmt.Fprintf(h.c.trace, "reply %d;", h.shard)
	return r
}

// copyResults puts a part's results at their places in the request's.
func copyResults[E, R any](into []R, p *driver.Part[E, R]) {
	for k, i := range p.Index {
		into[i] = p.Results[k]
	}
}

// sendTransfers routes and admits a request and hands its parts to their shards.
func (c *Cluster) sendTransfers(ts []ledger.Transfer) (*request, error) {
	r := &request{epoch: c.epoch, results: make([]ledger.TransferResult, len(ts))}
	parts := make([]*driver.TransfersPart, shards)
	events := make([]int, shards)
	driver.RouteTransfers(ts, shards, r.results, func(s uint32, i int) {
		if parts[s] == nil {
			parts[s] = &driver.TransfersPart{}
		}
		parts[s].Events = append(parts[s].Events, ts[i])
		parts[s].Index = append(parts[s].Index, int32(i))
		events[s]++
	})
	if !driver.Admit(c.admitted, events, requestsMax, eventsMax) {
		return nil, simulation.ErrOverloaded
	}
	for s, p := range parts {
		if p == nil {
			continue
		}
		p.Results = make([]ledger.TransferResult, len(p.Events))
		c.transferParts[p] = r
		r.parts++
		h := c.hosts[s]
		h.input(func() { h.d.Transfers(p) })
	}
	return r, nil
}

// run handles events until done holds, a crash cuts the requests of the epoch it started in
// (cut), or span passes. Faults that cut the power strike here, at any event.
func (c *Cluster) run(done func() bool, span time.Duration) (ok, cut bool) {
	epoch, end := c.epoch, c.sched+span
	for {
		if c.failure != nil {
			c.fail("seed %d: %v", c.seed, c.failure)
			return false, false
		}
		if done() {
			return true, false
		}
		if c.epoch != epoch {
			return false, true
		}
		if c.sched > end || len(c.queue) == 0 {
			return false, false
		}
		if c.faults.Crashes && c.rng.IntN(1_000_000) < crashPerMillion {
			c.crash(&c.stats.Crashes)
			continue
		}
		c.step()
	}
}

// crashPerMillion: a cut at each event, per million (a few per run of 250 requests).
const crashPerMillion = 150

// crash cuts the power: only what was synced survives (plus a random part of the rest), every
// message and request in flight is lost, and the node recovers from storage.
func (c *Cluster) crash(count *int) {
	*count++
	c.epoch++
	c.trace.Write([]byte("crash;"))
	crashRNG := rand.New(rand.NewPCG(uint64(c.seed), uint64(c.epoch)))
	clone := c.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.rng.IntN(101), RNG: crashRNG})
	_ = c.store.Close() // the dead process's: nothing it does from now on reaches the clone
	c.fs = clone
	c.queue = c.queue[:0]
	c.drainsOpen = 0 // a crash ends the drains in flight (the operator runs them again)
	clear(c.transferParts)
	clear(c.accountParts)
	if err := c.open(); err != nil {
		c.failure = fmt.Errorf("recovery after a crash: %w", err)
	}
}

// restart is the process exiting on a failed commit, and starting again on what storage holds.
func (c *Cluster) restart() { c.crash(&c.stats.Restarts) }

// The simulation.System interface.

// Store is the store as it is now.
func (c *Cluster) Store() *storage.Store { return c.store }

// Read runs fn on a durable snapshot.
func (c *Cluster) Read(fn func(*storage.Reader) error) error {
	v, err := c.store.DurableSnapshot()
	if err != nil {
		return err
	}
	return errors.Join(fn(v), v.Close())
}

// CreateAccounts opens accounts, with every fault off: the harness needs their answer.
func (c *Cluster) CreateAccounts(as []ledger.Account) ([]ledger.AccountResult, error) {
	faults := c.faults
	c.faults = Faults{}
	defer func() { c.faults = faults }()
	r := &request{epoch: c.epoch, aresults: make([]ledger.AccountResult, len(as))}
	for i := range as {
		s := driver.AccountShard(as[i].ID, shards)
		p := &driver.AccountsPart{Events: as[i : i+1], Index: []int32{int32(i)}, Results: make([]ledger.AccountResult, 1)}
		if !driver.Admit(c.admitted, oneOn(s), 1<<20, 1<<20) {
			return nil, simulation.ErrOverloaded
		}
		c.accountParts[p] = r
		r.parts++
		h := c.hosts[s]
		h.input(func() { h.d.Accounts(p) })
	}
	if ok, _ := c.run(func() bool { return r.parts == 0 }, awaitSpan); !ok {
		return nil, fmt.Errorf("sim: accounts not answered (cut or stuck)")
	}
	return r.aresults, nil
}

func oneOn(s uint32) []int {
	events := make([]int, shards)
	events[s] = 1
	return events
}

// CreateTransfers sends one request and waits for its answer.
func (c *Cluster) CreateTransfers(ts []ledger.Transfer) ([]ledger.TransferResult, error) {
	r, err := c.sendTransfers(ts)
	if err != nil {
		return nil, err
	}
	switch ok, cut := c.run(func() bool { return r.parts == 0 }, awaitSpan); {
	case ok:
		return r.results, nil
	case cut:
		return nil, simulation.ErrCut
	}
	return nil, fmt.Errorf("sim: request not answered within %v of simulated time", awaitSpan)
}

// Burst sends the requests at once; with cut, the power goes at a random event while they are
// in flight.
func (c *Cluster) Burst(batches [][]ledger.Transfer, cut bool) ([][]ledger.TransferResult, []error, []bool) {
	reqs := make([]*request, len(batches))
	errs := make([]error, len(batches))
	results := make([][]ledger.TransferResult, len(batches))
	certain := make([]bool, len(batches))
	for i, b := range batches {
		reqs[i], errs[i] = c.sendTransfers(b)
		certain[i] = errs[i] != nil // overloaded: nothing ran
	}
	answered := func() bool {
		for _, r := range reqs {
			if r != nil && r.epoch == c.epoch && r.parts > 0 {
				return false
			}
		}
		return true
	}
	if cut {
		n := c.rng.IntN(60)
		c.run(func() bool { n--; return n < 0 || answered() }, awaitSpan)
		c.collect(reqs, results, errs, certain)
		c.crash(&c.stats.Cuts)
	}
	c.run(answered, awaitSpan)
	c.collect(reqs, results, errs, certain)
	for i, r := range reqs {
		if r != nil && results[i] == nil && errs[i] == nil {
			errs[i] = simulation.ErrCut
			if r.epoch == c.epoch {
				errs[i] = fmt.Errorf("sim: request not answered within %v of simulated time", awaitSpan)
			}
		}
	}
	return results, errs, certain
}

// collect takes the answers of requests answered by now, as certain.
func (c *Cluster) collect(reqs []*request, results [][]ledger.TransferResult, errs []error, certain []bool) {
	for i, r := range reqs {
		if r != nil && results[i] == nil && r.epoch == c.epoch && r.parts == 0 {
			results[i], certain[i] = r.results, true
		}
	}
}

// Crash cuts the power now and recovers.
func (c *Cluster) Crash() { c.crash(&c.stats.Cuts) }

// Await runs the cluster until cond holds, for at most awaitSpan of simulated time.
func (c *Cluster) Await(cond func() bool) bool {
	for {
		ok, cut := c.run(cond, awaitSpan)
		if !cut {
			return ok
		}
	}
}

// Quiet reports whether every outbox and hot-account buffer is empty, and every driver idle
// (everything it did is durable).
func (c *Cluster) Quiet() bool {
	for _, h := range c.hosts {
		if !h.d.Idle() || h.d.Gauges.Outbox.Load() != 0 || h.d.Gauges.Buffered.Load() != 0 {
			return false
		}
	}
	if c.drainsOpen != 0 {
		c.fail("seed %d: %d drains not finished, though every leg was answered", c.seed, c.drainsOpen)
	}
	return true
}

// Now is the ledger's time (the guarded clock's reading).
func (c *Cluster) Now() uint64 { return c.guard.Now() }

// Advance moves the ledger's clock forward. With clock faults, the wall clock also steps,
// sometimes, within the guard's bound (as NTP does), forward or back: the guard follows, and
// the ledger's time may go back a little.
func (c *Cluster) Advance(ns uint64) {
	c.ledgerMono += time.Duration(ns)
	if c.faults.Clock && c.wallStep == 0 && c.rng.IntN(3) == 0 {
		c.stats.ClockSteps++
		c.drift += time.Duration(c.rng.Int64N(int64(2*clockSkewMax))) - clockSkewMax
	}
	// The guard reads the clock at once (the shards read it every round): a step past the
	// bound that comes before the next reading must not leave it anchored on the drift of
	// before, which would move the ledger's time in the middle of a request when that step ends.
	c.guard.Now()
}

// Crashes counts the power cuts and restarts the cluster injected by itself.
func (c *Cluster) Crashes() int { return c.stats.Crashes + c.stats.Restarts }

// Close stops every driver cleanly (its last round committed), adds what the store holds to
// the trace, and closes the store.
func (c *Cluster) Close() {
	c.faults = Faults{}
	for _, h := range c.hosts {
		h.input(h.d.Stop)
	}
	v := c.store.Live()
	err := errors.Join(
		v.ForEachAccount(func(a ledger.Account) error { _, err := fmt.Fprintf(c.trace, "%+v;", a); return err }),
		v.ForEachPosting(func(p ledger.Posting) error { _, err := fmt.Fprintf(c.trace, "%+v;", p); return err }))
	if err != nil && c.failure == nil {
		c.failure = err
	}
	_ = c.store.Close()
}

// Flushes counts hot-account buffer flushes by reason.
func (c *Cluster) Flushes() [simulation.FlushReasons]uint64 {
	var out [simulation.FlushReasons]uint64
	for r := range out {
		out[r] = c.counters.HotFlushes[r].Load()
	}
	return out
}

// simPostingTailMax is the stores' storage.Options.PostingTailMax: small, so that shards write
// their postings to index pages many times a run, crashes and restarts among them.
const simPostingTailMax = 64
