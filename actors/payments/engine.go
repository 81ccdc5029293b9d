// Package payments hosts the payment orders of ledger/payment: one actor per shard owns the
// orders of its shard, serializes their changes and group-commits them to the store, like the
// ledger's shards do with postings. Each actor is a goroutine that owns all of its state and
// reads its inboxes; nothing else touches an order.
//
// What an order decides runs only once the state that decided it is durable: a reply to the
// caller, the order's ledger transfers (sent through the shard's ledger pipe, one batch at a
// time), its channel calls (through the channel's gateway). On start, every order that still
// waits for something resumes from its durable state (payment.Order.Resume).
//
// Orders are routed by shard: a new order by a hash of its form and idempotency key (a refund
// by its original payment's shard, so that the refund and the payment change in one commit),
// an existing one by its id: ids of shard s are s+1, s+1+S, s+1+2S, ...
package payments

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/storage"
)

// Limits and defaults of the payment actors.
const (
	// ActiveOrdersMaxDefault bounds the orders one shard keeps in flight (waiting for a
	// posting, the channel or an exception's refund); past it new orders answer overloaded.
	ActiveOrdersMaxDefault = 200_000
	// RequestInboxMax bounds the callers' requests waiting for a shard; past it a request is
	// refused with ErrOverloaded.
	RequestInboxMax = 4096
	// RoundOrdersMax bounds the orders one commit writes, give or take one message's: a
	// round that reaches it while the last one commits takes nothing more until that one is
	// durable.
	RoundOrdersMax = 8190
	// TickDefault is how often a shard looks for queries and retries that are due.
	TickDefault = 100 * time.Millisecond
	// RetryAfter is how long a transfer the ledger could not take yet (overloaded, in flight)
	// waits before it is sent again.
	RetryAfter = 50 * time.Millisecond
	// CreateBatchMax is the most requests one Create call takes.
	CreateBatchMax = 8190
	// ListMax is the most orders one listing returns.
	ListMax = 1000
	// ReconcileMax is the most orders, and the most ledger transfers, Reconcile reads for one
	// biz id.
	ReconcileMax = 100_000
	// AccountCacheMax bounds the accounts a shard remembers (what never changes of them).
	AccountCacheMax = 1 << 16
)

// Ledger is what the payment actors need of the ledger.
type Ledger interface {
	CreateAccounts([]ledger.Account) ([]ledger.AccountResult, error)
	CreateTransfers([]ledger.Transfer) ([]ledger.TransferResult, error)
	// Read runs a function on a durable snapshot of the store (actors.Ledger.Read).
	Read(func(*storage.Reader) error) error
}

// Config configures the payment actors.
type Config struct {
	Setup *payment.Setup
	// Clients are the channels, by name (every channel of Setup needs one).
	Clients map[string]channel.Client
	// Secrets are the channels' shared HMAC secrets, by name: their statements are verified
	// with them (a channel without one has its statements refused).
	Secrets map[string][]byte
	Gateway gateway.Config
	// Ledgers are the ledgers (currencies) whose platform accounts are opened at start.
	Ledgers         []uint32
	ActiveOrdersMax int
	Tick            time.Duration
	// Now is the clock (ns since the epoch); nil: the wall clock.
	Now     func() uint64
	Logger  *slog.Logger
	Metrics *Metrics
	// Events takes every durable round of orders (the event stream's sequencer); nil: none.
	Events actors.EventSink
}

// Errors of the payment actors.
var (
	// ErrStopped and ErrOverloaded are the ledger's: the API maps them the same way.
	ErrStopped    = actors.ErrStopped
	ErrOverloaded = actors.ErrOverloaded
	// ErrUnknownChannel: no channel of that name.
	ErrUnknownChannel = errors.New("payments: unknown channel")
	// ErrReconcileTooLarge: a biz id has more orders or transfers than one reconciliation
	// reads (ReconcileMax).
	ErrReconcileTooLarge = errors.New("payments: too many orders or transfers under the biz id to reconcile at once")
	// ErrFailed: a commit failed; the payment actors stopped taking work (the process must
	// restart and recover).
	ErrFailed = errors.New("payments: storage failed")
)

// Engine is the payment actors of one store.
type Engine struct {
	cfg      Config
	store    *storage.Store
	ledger   Ledger
	shards   []*shard
	gateways map[string]*gateway.Gateway
	seed     maphash.Seed
	life     sync.RWMutex // enter's Add happens before Stop's Wait
	stopped  bool         // under life
	active   sync.WaitGroup
	stmts    statements
	quit     chan struct{} // closed by Stop: the statement retry loop ends
	loops    sync.WaitGroup
	log      *slog.Logger
	metrics  *Metrics

	commitHook atomic.Pointer[func(orders int)] // tests: runs before each commit, with its size
}

// Reply answers one request of Create: the order as it stands, durable, for ResultOK and
// ResultExists.
type Reply struct {
	Result payment.Result
	Order  *payment.Order
}

// ChannelStatus is a channel's gateway as an operator sees it.
type ChannelStatus struct {
	Name     string
	Degraded bool
	Circuit  gateway.CircuitState
	InFlight int
	Queued   int
}

// Start opens the platform's accounts, recovers every order still in flight from the store
// and starts the actors.
func Start(store *storage.Store, l Ledger, cfg Config) (*Engine, error) {
	if cfg.Setup == nil {
		return nil, errors.New("payments: no setup")
	}
	if cfg.ActiveOrdersMax <= 0 {
		cfg.ActiveOrdersMax = ActiveOrdersMaxDefault
	}
	if cfg.Tick <= 0 {
		cfg.Tick = TickDefault
	}
	if cfg.Now == nil {
		cfg.Now = func() uint64 { return uint64(time.Now().UnixNano()) }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if len(cfg.Ledgers) == 0 {
		cfg.Ledgers = []uint32{1}
	}
	e := &Engine{cfg: cfg, store: store, ledger: l, gateways: map[string]*gateway.Gateway{}, seed: maphash.MakeSeed(),
		log: cfg.Logger, metrics: cfg.Metrics, quit: make(chan struct{})}
	e.stmts.fetch = make(chan struct{}, 1)
	if e.metrics == nil {
		e.metrics = NewMetrics()
	}
	e.metrics.zero(cfg.Setup.Channels)
	if err := e.rememberChannels(); err != nil {
		return nil, err
	}
	if err := e.openPlatformAccounts(); err != nil {
		return nil, err
	}
	if err := e.resumeStatementRecords(); err != nil {
		return nil, err
	}
	for _, name := range cfg.Setup.Channels {
		c, ok := cfg.Clients[name]
		if !ok {
			return nil, fmt.Errorf("payments: channel %q has no client", name)
		}
		gcfg := cfg.Gateway
		if gcfg.Logger == nil {
			gcfg.Logger = e.log
		}
		e.gateways[name] = gateway.New(name, c, gcfg, e.deliver)
	}
	n := store.Shards()
	for i := range n {
		s, err := newShard(e, i, n)
		if err != nil {
			return nil, err
		}
		e.shards = append(e.shards, s)
	}
	for _, g := range e.gateways {
		g.Start()
	}
	for _, s := range e.shards {
		s.start()
	}
	e.loops.Add(1)
	go e.retryStatementRecords()
	return e, nil
}

// rememberChannels fixes the channels' positions (their accounts' ids) from the store, and
// stores the channels it had not seen.
func (e *Engine) rememberChannels() error {
	v, err := e.store.DurableSnapshot()
	if err != nil {
		return err
	}
	known, err := v.Channels()
	if err := errors.Join(err, v.Close()); err != nil {
		return err
	}
	all, grew, err := e.cfg.Setup.Remember(known)
	if err != nil || !grew {
		return err
	}
	return e.store.SetChannels(all)
}

func (e *Engine) openPlatformAccounts() error {
	for _, l := range e.cfg.Ledgers {
		if l == 0 || l > payment.LedgerIDMax {
			return fmt.Errorf("payments: ledger %d: want 1 to %d", l, payment.LedgerIDMax)
		}
		as := e.cfg.Setup.PlatformAccounts(l)
		rs, err := e.ledger.CreateAccounts(as)
		if err != nil {
			return fmt.Errorf("payments: open the platform's accounts: %w", err)
		}
		for i, r := range rs {
			if r != ledger.AccountResultOK && r != ledger.AccountResultExists {
				return fmt.Errorf("payments: open the platform's account %d (subject %d, ledger %d): %v",
					as[i].ID, as[i].Code, l, r)
			}
		}
	}
	return nil
}

// shardOfID is the shard that owns order id.
func (e *Engine) shardOfID(id uint64) *shard {
	return e.shards[(id-1)%uint64(len(e.shards))]
}

// shardOfKey is the shard a new order's key belongs to.
func (e *Engine) shardOfKey(r *payment.Request) *shard {
	if r.Form == payment.Refund && r.Original != 0 {
		return e.shardOfID(r.Original)
	}
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteByte(byte(r.Form))
	h.WriteString(r.Key)
	return e.shards[h.Sum64()%uint64(len(e.shards))]
}

func (e *Engine) enter() error {
	e.life.RLock()
	defer e.life.RUnlock()
	if e.stopped {
		return ErrStopped
	}
	e.active.Add(1)
	return nil
}

// Create accepts payment requests: each answers its order (its voucher) once the order is
// durable, before the channel is called. results[i] answers reqs[i].
func (e *Engine) Create(reqs []payment.Request) ([]Reply, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.active.Done()
	if len(reqs) > CreateBatchMax {
		return nil, fmt.Errorf("payments: %d requests in one call, at most %d", len(reqs), CreateBatchMax)
	}
	replies := make([]Reply, len(reqs))
	parts := map[*shard][]int{}
	for i := range reqs {
		s := e.shardOfKey(&reqs[i])
		parts[s] = append(parts[s], i)
	}
	done := make(chan error, len(parts))
	sent := time.Now()
	for s, idx := range parts {
		if err := s.request(&createMsg{reqs: reqs, idx: idx, replies: replies, done: done, sent: sent}); err != nil {
			done <- err
		}
	}
	var errs []error
	for range parts {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return replies, nil
}

// Notice takes a verified callback of channel name: ResultOK once what it changed is durable,
// or a result saying why it is refused (nothing written).
func (e *Engine) Notice(name string, n channel.Notice) (payment.Result, error) {
	results, errs := e.Notices(name, []channel.Notice{n})
	return results[0], errs[0]
}

// Notices takes verified callbacks of channel name, each as Notice takes one, all at once:
// results[i] and errs[i] answer ns[i].
func (e *Engine) Notices(name string, ns []channel.Notice) (results []payment.Result, errs []error) {
	results, errs = make([]payment.Result, len(ns)), make([]error, len(ns))
	if err := e.enter(); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return results, errs
	}
	defer e.active.Done()
	msgs := make([]*noticeMsg, len(ns))
	for i, n := range ns {
		id, _, err := payment.ParseOrderNo(n.OrderNo)
		if err != nil {
			results[i] = payment.ResultOrderNotFound
			continue
		}
		m := &noticeMsg{channel: name, notice: n, id: id, done: make(chan answer, 1)}
		if err := e.shardOfID(id).request(m); err != nil {
			errs[i] = err
			continue
		}
		msgs[i] = m
	}
	for i, m := range msgs {
		if m != nil {
			a := <-m.done
			results[i], errs[i] = a.result, a.err
		}
	}
	return results, errs
}

// Resolve applies an operator's resolution to exception index of order id.
func (e *Engine) Resolve(id uint64, index int, how payment.Resolution, note string) (payment.Result, *payment.Order, error) {
	if err := e.enter(); err != nil {
		return 0, nil, err
	}
	defer e.active.Done()
	if id == 0 || id > payment.OrderIDMax {
		return payment.ResultOrderNotFound, nil, nil
	}
	m := &resolveMsg{id: id, index: index, how: how, note: note, done: make(chan answer, 1)}
	if err := e.shardOfID(id).request(m); err != nil {
		return 0, nil, err
	}
	a := <-m.done
	return a.result, a.order, a.err
}

// read runs fn on a durable view of the store (the ledger's reads: Ledger.Read).
func (e *Engine) read(fn func(v *storage.Reader) error) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.active.Done()
	return e.ledger.Read(fn)
}

// ordersOfBiz reads the orders indexed under a business id, at most limit of them.
func ordersOfBiz(v *storage.Reader, biz string, limit int) ([]*payment.Order, error) {
	var ids []uint64
	if err := v.OrdersByBizID(biz, func(id uint64) bool { ids = append(ids, id); return len(ids) < limit }); err != nil {
		return nil, err
	}
	out := make([]*payment.Order, 0, len(ids))
	for _, id := range ids {
		o, found, err := v.Order(id)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, fmt.Errorf("payments: order %d is indexed under biz id %q but missing", id, biz)
		}
		out = append(out, o)
	}
	return out, nil
}

// transfersOfBiz are the ids of the ledger transfers indexed under a business id, at most
// limit of them.
func transfersOfBiz(v *storage.Reader, biz string, limit int) ([]uint64, error) {
	var ids []uint64
	err := v.TransfersByBizID(biz, func(id uint64) bool { ids = append(ids, id); return len(ids) < limit })
	return ids, err
}

// Orders reads orders by id, durable; nil for an id with no order.
func (e *Engine) Orders(ids []uint64) ([]*payment.Order, error) {
	out := make([]*payment.Order, len(ids))
	err := e.read(func(v *storage.Reader) error {
		for i, id := range ids {
			o, found, err := v.Order(id)
			if err != nil {
				return err
			}
			if found {
				out[i] = o
			}
		}
		return nil
	})
	return out, err
}

// OrdersByBizID reads the orders of a business id, durable, at most limit (ListMax), through
// the index.
func (e *Engine) OrdersByBizID(biz string, limit int) ([]*payment.Order, error) {
	var out []*payment.Order
	err := e.read(func(v *storage.Reader) (err error) {
		out, err = ordersOfBiz(v, biz, min(max(limit, 1), ListMax))
		return err
	})
	return out, err
}

// TransfersByBizID reads the ids of the ledger transfers of a business id, through the index.
func (e *Engine) TransfersByBizID(biz string, limit int) ([]uint64, error) {
	var ids []uint64
	err := e.read(func(v *storage.Reader) (err error) {
		ids, err = transfersOfBiz(v, biz, min(max(limit, 1), ledger.BatchEventsMax))
		return err
	})
	return ids, err
}

// Recon is what Reconcile found for one biz id.
type Recon struct {
	Orders, Transfers int
	Differences       []payment.Difference
}

// Reconcile checks a biz id's orders, their channel outcomes and the ledger transfers carrying
// it against each other (payment.Reconcile), all read on one durable snapshot. A
// reconciliation join key of an order without a biz id (recon.OrderKey) checks that order and
// the transfers of its steps that carry no biz id.
func (e *Engine) Reconcile(biz string) (Recon, error) {
	var r Recon
	var orders []*payment.Order
	var transfers []ledger.Transfer
	err := e.read(func(v *storage.Reader) error {
		var err error
		if id, ok := recon.OrderOfKey(biz); ok {
			o, found, err := v.Order(id)
			if err != nil {
				return err
			}
			if found && o.BizID == "" {
				orders = append(orders, o)
			}
			return v.Transfers(payment.TransferIDs(id), func(t ledger.Transfer) {
				if t.BizID == "" {
					transfers = append(transfers, t)
				}
			})
		}
		if orders, err = ordersOfBiz(v, biz, ReconcileMax+1); err != nil {
			return err
		}
		if len(orders) > ReconcileMax {
			return fmt.Errorf("%w: more than %d orders", ErrReconcileTooLarge, ReconcileMax)
		}
		ids, err := transfersOfBiz(v, biz, ReconcileMax+1)
		if err != nil {
			return err
		}
		if len(ids) > ReconcileMax {
			return fmt.Errorf("%w: more than %d transfers", ErrReconcileTooLarge, ReconcileMax)
		}
		if err := v.Transfers(ids, func(t ledger.Transfer) { transfers = append(transfers, t) }); err != nil {
			return err
		}
		if len(transfers) != len(ids) {
			return fmt.Errorf("payments: %d transfers are indexed under biz id %q, %d found", len(ids), biz, len(transfers))
		}
		return nil
	})
	if err != nil {
		return Recon{}, err
	}
	r.Orders, r.Transfers = len(orders), len(transfers)
	r.Differences = payment.Reconcile(e.cfg.Setup, orders, transfers)
	return r, nil
}

// Exceptions lists orders with exceptions not resolved (or that ever had one), ascending by
// id above after, at most limit.
func (e *Engine) Exceptions(includeResolved bool, after uint64, limit int) ([]*payment.Order, error) {
	limit = min(max(limit, 1), ListMax)
	var out []*payment.Order
	err := e.read(func(v *storage.Reader) error {
		return v.OrdersWithExceptions(includeResolved, after, func(o *payment.Order) bool {
			out = append(out, o)
			return len(out) < limit
		})
	})
	return out, err
}

// SetDegraded flips a channel's degradation switch: while it is on, no request goes to the
// channel and payments through it fail fast (channel_unavailable).
func (e *Engine) SetDegraded(name string, degraded bool) (ChannelStatus, error) {
	g, ok := e.gateways[name]
	if !ok {
		return ChannelStatus{}, fmt.Errorf("%w: %q", ErrUnknownChannel, name)
	}
	g.SetDegraded(degraded)
	e.log.Warn("payments: channel degradation switched", "channel", name, "degraded", degraded)
	return statusOf(g), nil
}

// Channels is the status of every channel's gateway, by name.
func (e *Engine) Channels() []ChannelStatus {
	var out []ChannelStatus
	for _, name := range e.cfg.Setup.Channels {
		out = append(out, statusOf(e.gateways[name]))
	}
	return out
}

func statusOf(g *gateway.Gateway) ChannelStatus {
	st := g.Stats()
	return ChannelStatus{Name: g.Name(), Degraded: st.Degraded, Circuit: st.Circuit, InFlight: st.InFlight, Queued: st.Queued}
}

// Stats are the actors' gauges.
type Stats struct {
	Active int   // orders in flight
	Oldest int64 // ns since the epoch: when the oldest of them was created; 0 if none
}

// Stats sums the shards' gauges.
func (e *Engine) Stats() Stats {
	var st Stats
	for _, s := range e.shards {
		st.Active += int(s.activeGauge.Load())
		if o := s.oldestGauge.Load(); o != 0 && (st.Oldest == 0 || o < st.Oldest) {
			st.Oldest = o
		}
	}
	return st
}

// deliver routes a gateway's outcome to the shard of its order.
func (e *Engine) deliver(o gateway.Outcome) {
	id, _, err := payment.ParseOrderNo(o.Call.Request.OrderNo)
	if err != nil {
		e.log.Error("payments: INVARIANT: an outcome for a request no order made", "order_no", o.Call.Request.OrderNo)
		return
	}
	e.shardOfID(id).event(outcomeMsg{id: id, outcome: o})
}

// Stop stops taking work, lets every shard commit what it holds, and stops the gateways
// (calls still at a channel when ctx ends are abandoned: their orders query after a restart).
func (e *Engine) Stop(ctx context.Context) error {
	e.life.Lock()
	was := e.stopped
	e.stopped = true
	e.life.Unlock()
	if was {
		return nil
	}
	idle := make(chan struct{})
	go func() { e.active.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-ctx.Done():
		e.log.Warn("payments: stopping with calls still waiting", "err", ctx.Err())
	}
	close(e.quit)
	loops := make(chan struct{})
	go func() { e.loops.Wait(); close(loops) }()
	select {
	case <-loops:
	case <-ctx.Done(): // a retry still waiting for an import, as an import still running above
	}
	var errs []error
	for _, s := range e.shards {
		s.stop()
	}
	for _, name := range slices.Sorted(maps.Keys(e.gateways)) {
		if err := e.gateways[name].Stop(ctx); err != nil && !errors.Is(err, gateway.ErrAbandoned) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

var _ Ledger = (*actors.Ledger)(nil)
