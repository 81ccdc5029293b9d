// Package gateway stands in front of one external payment channel (a channel.Client) and
// decides, for every call the ledger wants to make to it, whether and when it is sent: a
// per-call timeout, a cap on calls in flight with a bounded queue in front, a rate limit, a
// circuit breaker and an operator's degradation switch. Every call ends in exactly one
// Outcome:
//
//   - Answered: the channel answered; Outcome.Result is its answer (processing, succeeded,
//     failed or not_found).
//   - Unknown: the call was handed to the client and its outcome is not known: a timeout, a
//     transport error, an answer that could not be read, or the gateway stopped while it was
//     in flight. It may have reached the channel: the caller never sends it again as new,
//     it queries (Call.Query).
//   - Rejected: the call was definitely not handed to the client (circuit open, degraded,
//     busy, rate limited, stopping; Outcome.Err says which). The caller may fail the
//     payment at once: nothing was sent.
//
// One goroutine, the gateway's loop, owns all of its mutable state (the queue, the calls in
// flight, the rate limiter, the breaker's accounting) and is the only one to decide; other
// goroutines talk to it by messages: Submit and Stop send to it, a fixed pool of MaxInFlight
// workers takes calls from it and sends their results back. It is a plain goroutine rather
// than a Proto.Actor actor: it waits on timers and on its workers as well as on its inbox,
// which a select says directly, and its inbox is a bounded Go channel where Proto.Actor's
// mailboxes are unbounded. Counters and gauges are atomics that the loop writes and
// Stats reads.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/ledgercore/ledger/channel"
)

// Defaults of Config (units last).
const (
	// DefaultTimeout is how long one exchange with the channel (a call, or a batch) may take.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxInFlight is how many calls may be at the channel at once.
	DefaultMaxInFlight = 16
	// DefaultBatch is how many calls go to the channel in one exchange: one, unless the
	// client is a channel.Batcher and Config.Batch asks for more.
	DefaultBatch = 1
	// BatchWaitDivisor: by default, and whenever it is not below QueueWait, BatchWait is
	// QueueWait / BatchWaitDivisor: long enough that exchanges with a channel that answers in
	// time end first (and the next exchange takes every call then waiting), short enough
	// that a slow channel's calls go well within their QueueWait.
	BatchWaitDivisor = 4
	// DefaultQueueLimit is how many calls may wait for a slot (or for a rate token).
	DefaultQueueLimit = 256
	// DefaultQueueWait is how long a call may wait in the gateway before it is sent.
	DefaultQueueWait = time.Second
	// LingerMax is the longest Linger with the default QueueWait (its BatchWait).
	LingerMax = DefaultQueueWait / BatchWaitDivisor
	// LingerServer is the Linger ledgerd gives its gateways unless --channel-linger says
	// otherwise (Config's zero is none: a library caller asks for it).
	LingerServer = 2 * time.Millisecond
	// DefaultInboxLimit is how many submissions may wait for the loop to see them.
	DefaultInboxLimit = 1024
	// DefaultRateLimit is how many calls per second go to the channel.
	DefaultRateLimit rate.Limit = 100
	// DefaultBurst is how many calls may go at once above the rate.
	DefaultBurst = 20
	// DefaultBreakerFailures is the fewest consecutive failures that open the circuit; by
	// default the run is an eighth of MaxInFlight when that is longer.
	DefaultBreakerFailures = 5
	// DefaultBreakerFailureRatio is the failure ratio in the window that opens the circuit.
	DefaultBreakerFailureRatio = 0.5
	// DefaultBreakerMinCalls is how many calls the window must hold before the ratio counts.
	DefaultBreakerMinCalls = 20
	// DefaultBreakerWindow is the rolling window over which the failure ratio is counted.
	DefaultBreakerWindow = time.Minute
	// DefaultBreakerOpenFor is how long the circuit stays open before it lets probes through.
	DefaultBreakerOpenFor = 30 * time.Second
	// DefaultBreakerProbes is how many calls go through a half-open circuit; that many
	// successes close it, one failure opens it again.
	DefaultBreakerProbes = 1
)

// Config configures a Gateway. Zero fields take the defaults above.
type Config struct {
	Timeout     time.Duration // per exchange (a call, or a batch), as the context's deadline
	MaxInFlight int           // calls at the channel at once
	// Batch is how many calls may go in one exchange with a client that is a
	// channel.Batcher (at most channel.MaxBatchItems). An exchange takes every call that is
	// ready, up to Batch. While fewer than MaxInFlight/Batch exchanges (rounded up) are out,
	// a call goes at once (after Linger, when one is set), alone if nothing came meanwhile;
	// past that, calls wait for a full batch, an exchange to end (then Linger), or
	// BatchWait, whichever comes first, and then go (never more than MaxInFlight calls at
	// once). So under light load every call goes at once (or after Linger), and under heavy
	// load exchanges fill up.
	Batch     int
	BatchWait time.Duration
	// Linger is how long a call waits for others to share its exchange while fewer than
	// MaxInFlight/Batch exchanges are out (past that it waits BatchWait, as above); zero, it
	// goes at once. A channel that takes an exchange at once and decides later (it calls
	// back) keeps few exchanges out, so without a linger most of its exchanges carry one
	// call or a few; a linger of a millisecond or two makes exchanges of tens of calls at
	// thousands a second, for that much more time before each call. Ignored when Batch is 1;
	// at most BatchWait.
	Linger time.Duration
	// QueueLimit: calls waiting for a slot or a token; past it, ErrBusy.
	QueueLimit int
	// QueueWait bounds the time a call waits in the gateway before it is sent: a call still
	// waiting for a slot when it is up, or whose rate token would come later, is Rejected.
	QueueWait  time.Duration
	InboxLimit int        // submissions not yet seen by the loop; past it, ErrBusy
	RateLimit  rate.Limit // calls per second; rate.Inf for no limit
	Burst      int
	Breaker    BreakerConfig
	Clock      Clock      // nil: the machine's clock
	Metrics    *Collector // nil: no Prometheus metrics (Stats still counts)
	// Logger hears of the circuit's changes: opened (a warning), half-open and closed.
	// nil: nothing is logged.
	Logger *slog.Logger
}

// BreakerConfig configures the circuit breaker, which counts exchanges with the channel
// (one call, or a batch). An exchange after which every call in it is Unknown (it failed as
// a whole, or the channel answered none of its items) is a failure of the channel; an
// answer, even failed or not_found, is a success. Rejected calls do not count. While the
// circuit is half-open, each probe exchange carries one call.
type BreakerConfig struct {
	ConsecutiveFailures uint32        // open after this many failures in a row
	FailureRatio        float64       // or after this ratio of failures in the window...
	MinCalls            uint32        // ...once it holds at least this many calls
	Window              time.Duration // rolling, in ten buckets
	OpenFor             time.Duration // then half-open
	Probes              uint32        // calls let through while half-open
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defU := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&c.Timeout, DefaultTimeout)
	def(&c.MaxInFlight, DefaultMaxInFlight)
	def(&c.Batch, DefaultBatch)
	c.Batch = min(c.Batch, channel.MaxBatchItems)
	def(&c.QueueLimit, DefaultQueueLimit)
	defDur(&c.QueueWait, DefaultQueueWait)
	if c.BatchWait <= 0 || c.BatchWait >= c.QueueWait {
		c.BatchWait = c.QueueWait / BatchWaitDivisor
	}
	c.Linger = min(max(c.Linger, 0), c.BatchWait)
	def(&c.InboxLimit, DefaultInboxLimit)
	if c.RateLimit <= 0 {
		c.RateLimit = DefaultRateLimit
	}
	def(&c.Burst, DefaultBurst)
	// Exchanges sent together time out together: with many in flight, a run of consecutive
	// failures is no sign of an outage (the failure ratio is), so the run that opens the
	// circuit grows with the exchanges in flight.
	defU(&c.Breaker.ConsecutiveFailures, uint32(max(DefaultBreakerFailures, c.exchanges()/8)))
	if c.Breaker.FailureRatio <= 0 {
		c.Breaker.FailureRatio = DefaultBreakerFailureRatio
	}
	defU(&c.Breaker.MinCalls, DefaultBreakerMinCalls)
	defDur(&c.Breaker.Window, DefaultBreakerWindow)
	defDur(&c.Breaker.OpenFor, DefaultBreakerOpenFor)
	defU(&c.Breaker.Probes, DefaultBreakerProbes)
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// exchanges is how many exchanges may be at the channel at once before calls wait for
// others: MaxInFlight/Batch, rounded up (with defaults filled).
func (c Config) exchanges() int {
	return (c.MaxInFlight + c.Batch - 1) / c.Batch
}

// Call is one thing to ask the channel: send Request (Client.Do), or, with Query, ask for
// the status of Request.Op and Request.OrderNo (Client.Query).
type Call struct {
	Request channel.Request
	Query   bool
}

// OutcomeKind is how a call ended; see the package comment.
type OutcomeKind uint8

const (
	// Answered: the channel answered; Outcome.Result holds the answer.
	Answered OutcomeKind = 1 + iota
	// Unknown: the call may have reached the channel; query, never send it again as new.
	Unknown
	// Rejected: the call was never handed to the client; Outcome.Err says why.
	Rejected
)

func (k OutcomeKind) String() string {
	switch k {
	case Answered:
		return "answered"
	case Unknown:
		return "unknown"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Outcome is how one submitted call ended.
type Outcome struct {
	Call    Call
	Kind    OutcomeKind
	Result  channel.Result // Answered only
	Err     error          // Unknown: what went wrong (wraps the client's error); Rejected: why
	Latency time.Duration  // from Submit to this outcome
}

// Why a call was Rejected: it was not handed to the client.
var (
	ErrCircuitOpen = errors.New("gateway: circuit open")
	ErrDegraded    = errors.New("gateway: channel degraded by the operator")
	ErrBusy        = errors.New("gateway: busy (in-flight cap reached and queue full, or waited too long for a slot)")
	ErrRateLimited = errors.New("gateway: rate limited beyond the queue wait")
	ErrStopping    = errors.New("gateway: stopping")
)

// Why a call ended Unknown, besides the client's own errors (which Outcome.Err wraps).
var (
	ErrTimeout   = errors.New("gateway: call timed out")
	ErrBadAnswer = errors.New("gateway: channel answered an unknown status")
	ErrAbandoned = errors.New("gateway: stopped while the call was in flight")
)

// Gateway is the gateway of one channel. Its methods are safe for concurrent use.
type Gateway struct {
	name    string
	client  channel.Client
	cfg     Config
	deliver func(Outcome)
	clock   Clock
	seconds [nWhat]observer // latency of calls that reached the client, by what

	// Written by Submit and Stop; life guards closed against sends to inbox (so that the
	// loop, once it has seen Stop, can drain the inbox for good), nothing else.
	life   sync.RWMutex
	closed bool

	inbox  chan envelope      // Submit → loop; capacity InboxLimit
	wake   chan struct{}      // timers and SetDegraded → loop; capacity 1
	stopCh chan stopRequest   // Stop → loop; capacity 1
	work   chan *exchange     // loop → workers (MaxInFlight of them); unbuffered, sent to only with a free slot
	done   chan finished      // workers → loop; capacity MaxInFlight, so never blocks
	base   context.Context    // parent of every call's context; cancelled when Stop gives up
	cancel context.CancelFunc // of base
	exited chan struct{}      // closed when the loop has returned

	startOnce, stopOnce sync.Once
	abandoned           int // calls reported Unknown by Stop; read after exited

	degraded atomic.Bool
	stats    counters

	// Owned by the loop.
	queue     []*job
	inflight  map[*job]struct{}
	exchanges int           // at the channel
	limiter   *rate.Limiter // nil without a rate limit
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	timerAt   time.Time
	timerStop func() bool
}

type envelope struct {
	call    Call
	at      time.Time
	barrier chan struct{} // not a call: closed when the loop gets here (tests)
}

type stopRequest struct{ ctx context.Context }

// job is one call in the queue or in flight. The loop owns it; a worker only reads call.
type job struct {
	call        Call
	what        what              // its counters
	at          time.Time         // submitted
	reservation *rate.Reservation // its rate token, taken once it is at the head with a slot free
	readyAt     time.Time         // when that token is there
}

// exchange is the calls sent to the channel together; the loop makes it, a worker sends it.
type exchange struct {
	jobs   []*job
	report func(error)           // to the breaker, once the exchange is over
	one    [1]channel.ItemResult // the result of a call alone, without a slice of its own
}

// finished is a worker's report of one exchange: err when it failed as a whole, else
// results[i] for jobs[i].
type finished struct {
	x       *exchange
	results []channel.ItemResult
	err     error
	took    time.Duration
}

// errNoneAnswered is the breaker's failure for an exchange whose every item is unknown.
var errNoneAnswered = errors.New("gateway: the channel answered none of the exchange's calls")

func noneAnswered(results []channel.ItemResult) bool {
	for _, r := range results {
		if r.Err == nil {
			return false
		}
	}
	return true
}

// New makes the gateway of the channel called name in front of c. deliver receives every
// Outcome, from the gateway's goroutines, never from the goroutine calling Submit while it
// is inside Submit. Outcomes of calls that reached the loop come one at a time from the loop;
// a call refused before it reached the loop (inbox full, after Stop) is delivered from a
// goroutine of its own, so deliver must be safe for concurrent use. deliver must return
// quickly (send an actor a message): while it runs, the gateway decides nothing. It must not
// call Stop.
func New(name string, c channel.Client, cfg Config, deliver func(Outcome)) *Gateway {
	if _, ok := c.(channel.Batcher); !ok {
		cfg.Batch = 1
	}
	cfg = cfg.withDefaults()
	g := &Gateway{
		name: name, client: c, cfg: cfg, deliver: deliver, clock: cfg.Clock,
		inbox:    make(chan envelope, cfg.InboxLimit),
		wake:     make(chan struct{}, 1),
		stopCh:   make(chan stopRequest, 1),
		work:     make(chan *exchange),
		done:     make(chan finished, cfg.MaxInFlight),
		exited:   make(chan struct{}),
		inflight: make(map[*job]struct{}, cfg.MaxInFlight),
	}
	g.base, g.cancel = context.WithCancel(context.Background())
	if cfg.RateLimit != rate.Inf {
		g.limiter = rate.NewLimiter(cfg.RateLimit, cfg.Burst)
	}
	b := cfg.Breaker
	g.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  b.Probes,
		Interval:     b.Window,
		BucketPeriod: b.Window / 10,
		Timeout:      b.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= b.ConsecutiveFailures ||
				c.Requests >= b.MinCalls && float64(c.TotalFailures) >= b.FailureRatio*float64(c.Requests)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) { logCircuit(cfg.Logger, name, from, to, b) },
	})
	if cfg.Metrics != nil {
		cfg.Metrics.add(g)
	}
	return g
}

// logCircuit logs a change of the circuit's state. The breaker calls it under its lock, from
// the gateway's loop (an exchange's report) or from whoever asks its state (a submission, a
// status read, a metrics scrape): half-open is logged at the first of those after OpenFor.
func logCircuit(log *slog.Logger, name string, from, to gobreaker.State, b BreakerConfig) {
	switch to {
	case gobreaker.StateOpen:
		log.Warn("gateway: channel circuit opened: its calls fail fast (channel_unavailable) until a probe gets through",
			"channel", name, "from", from.String(), "probe_after", b.OpenFor)
	case gobreaker.StateHalfOpen:
		log.Info("gateway: channel circuit half-open: probe exchanges of one call each go through", "channel", name, "probes", b.Probes)
	default:
		log.Info("gateway: channel circuit closed: calls go to the channel again", "channel", name, "from", from.String())
	}
}

// Name is the channel's name.
func (g *Gateway) Name() string { return g.name }

// Start starts the loop and the workers. Calls submitted before Start wait in the inbox.
func (g *Gateway) Start() {
	g.startOnce.Do(func() {
		for range g.cfg.MaxInFlight {
			go g.worker()
		}
		go g.loop()
	})
}

// Stop stops the gateway: calls not yet sent are Rejected with ErrStopping, and so is every
// later Submit; Stop waits for the calls in flight until ctx ends, then cancels their
// contexts and reports those still running as Unknown (ErrAbandoned), and returns an error
// saying how many (wrapping ErrAbandoned). It returns when the loop has exited, which is at the latest when the ctx
// of the first Stop ends (and deliver has returned). Workers stuck in a client that ignores
// its context exit when it returns.
func (g *Gateway) Stop(ctx context.Context) error {
	g.stopOnce.Do(func() {
		g.life.Lock()
		g.closed = true
		g.life.Unlock()
		g.stopCh <- stopRequest{ctx} // before Start: a loop started here sees it first
		g.Start()
	})
	<-g.exited
	if g.abandoned > 0 {
		return fmt.Errorf("gateway %s: %d calls: %w (%w)", g.name, g.abandoned, ErrAbandoned, context.Cause(ctx))
	}
	return nil
}

// Submit hands the gateway a call and returns at once; its Outcome comes later through
// deliver (see New). Every Submit leads to exactly one Outcome.
func (g *Gateway) Submit(call Call) {
	e := envelope{call: call, at: g.clock.Now()}
	g.life.RLock()
	defer g.life.RUnlock()
	if g.closed {
		go g.rejectOutside(e, ErrStopping)
		return
	}
	select {
	case g.inbox <- e:
	default:
		go g.rejectOutside(e, ErrBusy)
	}
}

// SetDegraded switches the channel off (true) or on again (false). While it is off, every
// call is Rejected with ErrDegraded at once, and so are those waiting in the queue when it
// is switched off; calls already in flight end as they end.
func (g *Gateway) SetDegraded(off bool) {
	g.degraded.Store(off)
	g.nudge()
}

// Degraded says whether the channel is switched off.
func (g *Gateway) Degraded() bool { return g.degraded.Load() }

func (g *Gateway) nudge() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// barrier returns once the loop has seen every call submitted before it (or has exited).
func (g *Gateway) barrier() {
	ch := make(chan struct{})
	g.life.RLock()
	closed := g.closed
	if !closed {
		g.inbox <- envelope{barrier: ch}
	}
	g.life.RUnlock()
	if closed {
		<-g.exited
		return
	}
	select {
	case <-ch:
	case <-g.exited:
	}
}

func (g *Gateway) worker() {
	for x := range g.work {
		ctx, cancel := g.clock.WithTimeout(g.base, g.cfg.Timeout)
		start := g.clock.Now()
		results, err := g.send1(ctx, x)
		took := g.clock.Now().Sub(start)
		if err != nil && errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
			err = fmt.Errorf("%w after %v: %w", ErrTimeout, g.cfg.Timeout, err)
		}
		cancel()
		g.done <- finished{x: x, results: results, err: err, took: took}
	}
}

// send1 makes exchange x: one call alone, or a batch.
func (g *Gateway) send1(ctx context.Context, x *exchange) ([]channel.ItemResult, error) {
	if len(x.jobs) == 1 {
		res, err := g.call(ctx, x.jobs[0].call)
		x.one[0] = channel.ItemResult{Result: res, Err: err}
		return x.one[:], err
	}
	return g.batch(ctx, x.jobs)
}

// call asks the client; a panic in it is an error like any other (the outcome is unknown).
func (g *Gateway) call(ctx context.Context, c Call) (res channel.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gateway: channel client panicked: %v", r)
		}
	}()
	if c.Query {
		res, err = g.client.Query(ctx, c.Request.Op, c.Request.OrderNo)
	} else {
		res, err = g.client.Do(ctx, c.Request)
	}
	if err == nil {
		err = checkStatus(res)
	}
	return res, err
}

// batch sends jobs in one exchange (New made sure the client is a Batcher); a panic in it
// is an error like any other.
func (g *Gateway) batch(ctx context.Context, jobs []*job) (out []channel.ItemResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("gateway: channel client panicked: %v", r)
		}
	}()
	items := make([]channel.Item, len(jobs))
	for i, j := range jobs {
		items[i] = channel.Item{Request: j.call.Request, Query: j.call.Query}
	}
	out = make([]channel.ItemResult, len(jobs))
	if err := g.client.(channel.Batcher).Batch(ctx, items, out); err != nil {
		return nil, err
	}
	for i := range out {
		if out[i].Err == nil {
			out[i].Err = checkStatus(out[i].Result)
		}
	}
	return out, nil
}

// checkStatus refuses an answer of a status the gateway does not know.
func checkStatus(res channel.Result) error {
	if res.Status < channel.Processing || res.Status > channel.NotFound {
		return fmt.Errorf("%w: %v", ErrBadAnswer, res.Status)
	}
	return nil
}

func (g *Gateway) loop() {
	defer close(g.exited)
	for {
		select { // Stop first: once it is called, nothing more is sent
		case s := <-g.stopCh:
			g.shutdown(s.ctx)
			return
		default:
		}
		select {
		case e := <-g.inbox:
			g.admit(e)
		case f := <-g.done:
			g.finish(f)
		case <-g.wake:
		case s := <-g.stopCh:
			g.shutdown(s.ctx)
			return
		}
		g.pump()
	}
}

// admit takes a submission from the inbox: rejects it or queues it.
func (g *Gateway) admit(e envelope) {
	if e.barrier != nil {
		g.pump()
		close(e.barrier)
		return
	}
	j := &job{call: e.call, at: e.at, what: whatOf(e.call)}
	switch {
	case g.degraded.Load():
		g.reject(j, ErrDegraded)
	case g.breaker.State() == gobreaker.StateOpen:
		g.reject(j, ErrCircuitOpen)
	case len(g.queue) >= g.cfg.QueueLimit:
		g.reject(j, ErrBusy)
	default:
		g.queue = append(g.queue, j)
	}
}

// pump does what the time and the state allow: rejects what must be, sends what can be,
// and sets the timer for the next thing that time will change.
func (g *Gateway) pump() {
	now := g.clock.Now()
	if g.degraded.Load() {
		for len(g.queue) > 0 {
			g.reject(g.pop(now), ErrDegraded)
		}
	}
	g.expire(now)
	for len(g.queue) > 0 && len(g.inflight) < g.cfg.MaxInFlight && g.mayExchange(now) {
		h := g.queue[0]
		if !g.ready(h, now, true) {
			if h.reservation == nil { // refused its token: rejected and gone
				continue
			}
			break
		}
		report, err := g.breaker.Allow()
		if err != nil { // open, or half-open with its probes out
			g.reject(g.pop(now), ErrCircuitOpen)
			continue
		}
		x := &exchange{report: report}
		size := g.cfg.Batch
		if g.breaker.State() == gobreaker.StateHalfOpen {
			size = 1 // a probe risks one call
		}
		for len(g.queue) > 0 && len(x.jobs) < size && len(g.inflight) < g.cfg.MaxInFlight &&
			(len(x.jobs) == 0 || g.ready(g.queue[0], now, false)) {
			j := g.queue[0]
			g.queue[0] = nil
			g.queue = g.queue[1:]
			g.inflight[j] = struct{}{}
			x.jobs = append(x.jobs, j)
		}
		g.exchanges++
		g.work <- x // a worker is free: fewer exchanges are out than there are workers
	}
	g.stats.queued.Store(int64(len(g.queue)))
	g.stats.inFlight.Store(int64(len(g.inflight)))
	g.arm(now)
}

// mayExchange says whether a new exchange may start now (calls in flight aside): once a full
// batch waits, or the head has waited as long as it waits for others (batchWait).
func (g *Gateway) mayExchange(now time.Time) bool {
	return len(g.queue) >= g.cfg.Batch || !now.Before(g.queue[0].at.Add(g.batchWait()))
}

// batchWait is how long the head of the queue waits for others to share its exchange:
// Linger while fewer than Config.exchanges are out, BatchWait past that.
func (g *Gateway) batchWait() time.Duration {
	if g.exchanges < g.cfg.exchanges() {
		return g.cfg.Linger
	}
	return g.cfg.BatchWait
}

// ready says whether j, at the head of the queue, may be sent now: it takes j's rate token
// when it has none yet. As the first of an exchange (first), a token that comes later is
// kept (j waits at the head for it; false) and one that would come past j's wait rejects j
// (false, j popped, no token); as a follower, only a token there now is taken (false
// otherwise, and j keeps its place).
func (g *Gateway) ready(j *job, now time.Time, first bool) bool {
	if j.reservation == nil && g.limiter != nil {
		r := g.limiter.ReserveN(now, 1)
		delay := r.DelayFrom(now)
		switch {
		case !first && (!r.OK() || delay > 0):
			r.CancelAt(now)
			return false
		case !r.OK() || now.Add(delay).After(j.at.Add(g.cfg.QueueWait)):
			r.CancelAt(now)
			g.reject(g.pop(now), ErrRateLimited)
			return false
		}
		j.reservation, j.readyAt = r, now.Add(delay)
	}
	return !now.Before(j.readyAt)
}

// expire rejects the calls that waited QueueWait for a slot (all but a head that holds a
// rate token: that one is sent when its token is there, which is within its wait).
func (g *Gateway) expire(now time.Time) {
	i := 0
	if len(g.queue) > 0 && g.queue[0].reservation != nil {
		i = 1
	}
	k := i
	for k < len(g.queue) && !now.Before(g.queue[k].at.Add(g.cfg.QueueWait)) {
		k++
	}
	if k == i {
		return
	}
	expired := append([]*job(nil), g.queue[i:k]...)
	g.queue = append(g.queue[:i], g.queue[k:]...)
	for _, j := range expired {
		g.reject(j, ErrBusy)
	}
}

// pop takes the head off the queue, giving back its rate token if it holds one.
func (g *Gateway) pop(now time.Time) *job {
	h := g.queue[0]
	g.queue[0] = nil
	g.queue = g.queue[1:]
	if h.reservation != nil {
		h.reservation.CancelAt(now)
	}
	return h
}

// arm sets the loop's one timer for the next moment the queue changes by itself: the first
// call whose wait is up (but a head that holds a rate token: it is sent when the token is
// there, within its wait); and, with a slot free, the head's token, or the end of its
// BatchWait when it waits for others.
func (g *Gateway) arm(now time.Time) {
	var at time.Time
	if len(g.queue) > 0 {
		h := g.queue[0]
		i := 0
		if h.reservation != nil {
			i = 1
		}
		if i < len(g.queue) {
			at = g.queue[i].at.Add(g.cfg.QueueWait)
		}
		if len(g.inflight) < g.cfg.MaxInFlight {
			var next time.Time
			switch {
			case !g.mayExchange(now):
				next = h.at.Add(g.batchWait())
			case h.reservation != nil:
				next = h.readyAt
			}
			if !next.IsZero() && (at.IsZero() || next.Before(at)) {
				at = next
			}
		}
	}
	if at.Equal(g.timerAt) {
		return
	}
	if g.timerStop != nil {
		g.timerStop()
		g.timerStop = nil
	}
	g.timerAt = at
	if !at.IsZero() {
		g.timerStop = g.clock.AfterFunc(at.Sub(now), g.nudge)
	}
}

// finish takes a worker's report of an exchange.
func (g *Gateway) finish(f finished) {
	g.exchanges--
	switch {
	case f.err != nil:
		f.x.report(f.err)
	case noneAnswered(f.results):
		f.x.report(errNoneAnswered)
	default:
		f.x.report(nil)
	}
	for i, j := range f.x.jobs {
		if _, ok := g.inflight[j]; !ok {
			continue // abandoned by Stop and already reported
		}
		delete(g.inflight, j)
		g.seconds[j.what].observe(f.took)
		err := f.err
		var res channel.Result
		if err == nil {
			res, err = f.results[i].Result, f.results[i].Err
		}
		o := Outcome{Call: j.call, Kind: Answered, Result: res}
		if err != nil {
			o = Outcome{Call: j.call, Kind: Unknown, Err: err}
		}
		g.emit(j, o)
	}
}

func (g *Gateway) reject(j *job, why error) {
	g.emit(j, Outcome{Call: j.call, Kind: Rejected, Err: why})
}

// emit delivers an outcome from the loop, with the gauges up to date.
func (g *Gateway) emit(j *job, o Outcome) {
	g.stats.queued.Store(int64(len(g.queue)))
	g.stats.inFlight.Store(int64(len(g.inflight)))
	g.send(j, o)
}

func (g *Gateway) send(j *job, o Outcome) {
	o.Latency = g.clock.Now().Sub(j.at)
	g.stats.count(j.what, o)
	g.deliver(o)
}

// rejectOutside rejects a call the loop never took in (Submit runs it in a goroutine of its
// own); it touches nothing of the loop's.
func (g *Gateway) rejectOutside(e envelope, why error) {
	j := &job{call: e.call, at: e.at, what: whatOf(e.call)}
	g.send(j, Outcome{Call: j.call, Kind: Rejected, Err: why})
}

// shutdown rejects everything not sent, waits for the calls in flight until ctx ends, and
// reports those left as Unknown.
func (g *Gateway) shutdown(ctx context.Context) {
	now := g.clock.Now()
	for len(g.queue) > 0 {
		g.reject(g.pop(now), ErrStopping)
	}
	// Stop set closed before it sent stopCh, so the inbox gets nothing more.
	for drained := false; !drained; {
		select {
		case e := <-g.inbox:
			if e.barrier != nil {
				close(e.barrier)
			} else {
				g.rejectOutside(e, ErrStopping)
			}
		default:
			drained = true
		}
	}
	g.stats.queued.Store(0)
	if g.timerStop != nil {
		g.timerStop()
	}
	for len(g.inflight) > 0 {
		select {
		case f := <-g.done:
			g.finish(f)
		case <-ctx.Done():
			g.cancel()
			for j := range g.inflight {
				delete(g.inflight, j)
				g.abandoned++
				g.emit(j, Outcome{Call: j.call, Kind: Unknown,
					Err: fmt.Errorf("%w: %w", ErrAbandoned, context.Cause(ctx))})
			}
		}
		g.stats.inFlight.Store(int64(len(g.inflight)))
	}
	g.cancel()
	close(g.work)
}
