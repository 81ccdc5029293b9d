package payments

import (
	"container/heap"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// Messages to a shard. Callers' requests go through a bounded inbox; events (ledger results,
// channel outcomes, commits) through one whose bound follows from the orders in flight.
type (
	createMsg struct {
		reqs    []payment.Request
		idx     []int
		replies []Reply
		done    chan<- error
		sent    time.Time // when the caller sent it (the voucher's stages, voucherWait)
	}
	noticeMsg struct {
		channel string
		notice  channel.Notice
		id      uint64
		done    chan answer
	}
	resolveMsg struct {
		id    uint64
		index int
		how   payment.Resolution
		note  string
		done  chan answer
	}
	outcomeMsg struct {
		id      uint64
		outcome gateway.Outcome
	}
	ledgerMsg struct {
		ts  []ledger.Transfer
		rs  []ledger.TransferResult
		err error
	}
	committedMsg struct{ err error } // on the shard's durable channel, not its events
)

type answer struct {
	result payment.Result
	order  *payment.Order
	err    error
}

// round is what a shard changed and has not made durable yet, and what waits for it.
type round struct {
	writes  map[uint64]int // order -> its write in order
	order   []storage.OrderWrite
	after   []func(err error) // replies, once the round is durable (or failed)
	effects []effect
	final   []finalOrder // orders that reach a final state in the round (metrics)
	opened  []payment.ExceptionKind
	// vouchers are the create messages whose new orders the round writes, and sealed when
	// the round was sealed: where their vouchers waited (ledger_payment_voucher_stage_seconds).
	vouchers []voucherWait
	sealed   time.Time
}

// voucherWait is a create message with new orders in a round: when it was sent and when the
// shard took it from its inbox.
type voucherWait struct{ sent, taken time.Time }

type effect struct {
	id      uint64
	effects payment.Effects
}

func newRound() *round { return &round{writes: map[uint64]int{}} }

// holds reports whether the round writes order id.
func (r *round) holds(id uint64) bool {
	_, ok := r.writes[id]
	return ok
}

func (r *round) empty() bool { return len(r.order) == 0 && len(r.after) == 0 && len(r.effects) == 0 }

// shard is one payment actor.
type shard struct {
	e        *Engine
	id, n    uint32
	requests chan any
	events   chan any
	quit     chan struct{}
	done     chan struct{}

	orders map[uint64]*payment.Order // in flight, or changed in a round not yet durable
	// accounts caches what never changes of the party accounts new orders name (at most
	// AccountCacheMax; emptied when full). An account not found is not cached.
	accounts map[uint64]ledger.Account
	keys     map[keyRef]uint64 // new orders of rounds not yet durable
	lastID   uint64

	cur        *round
	committing *round
	commits    chan commitJob
	durable    chan committedMsg // the committer's answers, apart from events: a full round waits for them alone
	writer     *storage.OrderWriter
	pipe       *pipe
	failed     error

	due     dueHeap
	sched   map[uint64]uint64 // order -> the time of its entry in due
	retries []ledger.Transfer // transfers the ledger could not take yet
	retryAt uint64

	activeGauge atomic.Int64
	oldestGauge atomic.Int64

	closing atomic.Bool  // set by stop: request refuses from then on
	sending atomic.Int32 // callers inside request
}

type keyRef struct {
	form     payment.Form
	original uint64
	key      string
}

type commitJob struct {
	writes []storage.OrderWrite
	lastID uint64
}

func newShard(e *Engine, id, n uint32) (*shard, error) {
	s := &shard{e: e, id: id, n: n, requests: make(chan any, RequestInboxMax),
		events: make(chan any, 4*e.cfg.ActiveOrdersMax+RequestInboxMax), quit: make(chan struct{}),
		done: make(chan struct{}), orders: map[uint64]*payment.Order{}, keys: map[keyRef]uint64{}, cur: newRound(),
		sched: map[uint64]uint64{}, accounts: map[uint64]ledger.Account{},
		commits: make(chan commitJob, 1), durable: make(chan committedMsg, 1), writer: e.store.OrderWriter(id)}
	s.pipe = newPipe(e.ledger, s)
	v, err := e.store.DurableSnapshot()
	if err != nil {
		return nil, err
	}
	defer v.Close()
	if s.lastID, err = v.LastOrderID(id); err != nil {
		return nil, err
	}
	if s.lastID == 0 {
		s.lastID = uint64(id) + 1 - uint64(n) // the first id is id+1
	}
	err = v.ForEachActiveOrder(id, func(o *payment.Order) error {
		s.orders[o.ID] = o
		return nil
	})
	return s, err
}

func (s *shard) start() {
	go s.committer()
	go s.pipe.run()
	go s.loop()
}

// request hands a caller's request to the shard, or refuses it when the inbox is full or
// the shard is stopping. A request in the inbox is always answered: by the shard, or, when
// it stopped first, by stop.
func (s *shard) request(m any) error {
	s.sending.Add(1)
	defer s.sending.Add(-1)
	if s.closing.Load() {
		return ErrStopped
	}
	select {
	case s.requests <- m:
		return nil
	default:
		return ErrOverloaded
	}
}

// event hands an event to the shard; after stop it is dropped (the order resumes from its
// durable state on the next start).
func (s *shard) event(m any) {
	select {
	case s.events <- m:
	case <-s.quit:
	}
}

// stop stops the loop, then answers ErrStopped to every request it left in the inbox
// (after the senders that saw the shard open have sent: none sends after closing is set).
func (s *shard) stop() {
	s.closing.Store(true)
	close(s.quit)
	<-s.done
	for s.sending.Load() > 0 {
		runtime.Gosched()
	}
	for {
		select {
		case m := <-s.requests:
			s.answerStopped(m)
		default:
			return
		}
	}
}

// answerStopped answers a request the stopped shard never took.
func (s *shard) answerStopped(m any) {
	switch m := m.(type) {
	case *createMsg:
		m.done <- ErrStopped
	case *noticeMsg:
		m.done <- answer{err: ErrStopped}
	case *resolveMsg:
		m.done <- answer{err: ErrStopped}
	case probeMsg:
		close(m.done)
	}
}

func (s *shard) now() uint64 { return s.e.cfg.Now() }

func (s *shard) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.e.cfg.Tick)
	defer tick.Stop()
	now := s.now()
	for _, o := range s.orders {
		s.run(o, o.Resume(s.e.cfg.Setup, now))
	}
	s.flush()
	for {
		if s.full() {
			// The round is as large as a round may be and the last one is not durable yet:
			// take nothing else until it is (requests wait in their inbox, or are refused
			// when it is full; events wait in theirs).
			select {
			case c := <-s.durable:
				s.handle(c)
			case <-s.quit:
				s.shutdown()
				return
			}
			s.flush()
			continue
		}
		select {
		case c := <-s.durable:
			s.handle(c)
		case m := <-s.events:
			s.handle(m)
		case m := <-s.requests:
			s.handle(m)
		case <-tick.C:
			s.tick()
		case <-s.quit:
			s.shutdown()
			return
		}
		// Take what else is waiting before committing: that is the group in group commit.
		for n := 0; n < RoundOrdersMax && !s.full(); n++ {
			select {
			case c := <-s.durable:
				s.handle(c)
				continue
			case m := <-s.events:
				s.handle(m)
				continue
			case m := <-s.requests:
				s.handle(m)
				continue
			default:
			}
			break
		}
		s.flush()
	}
}

// shutdown commits what the shard holds and runs its effects, so that what was decided goes
// out; answers to them are dropped (they resume after a restart).
func (s *shard) shutdown() {
	for s.committing != nil || !s.cur.empty() && s.failed == nil {
		if s.committing == nil {
			s.flush()
			continue
		}
		s.handle(<-s.durable)
	}
	close(s.commits)
	s.pipe.stop()
	_ = s.writer.Close()
}

func (s *shard) handle(m any) {
	if s.failed != nil {
		s.refuse(m)
		return
	}
	switch m := m.(type) {
	case *createMsg:
		s.create(m)
	case *noticeMsg:
		s.notice(m)
	case *resolveMsg:
		s.resolve(m)
	case outcomeMsg:
		s.outcome(m)
	case ledgerMsg:
		s.ledgerResults(m)
	case committedMsg:
		s.committed(m.err)
	case probeMsg:
		m.fn(s)
		close(m.done)
	default:
		panic(fmt.Sprintf("payments: INVARIANT: unknown message %T", m))
	}
}

// refuse answers what a failed shard is asked with its failure, and drops events: the process
// must restart, and the orders resume from their durable state.
func (s *shard) refuse(m any) {
	switch m := m.(type) {
	case *createMsg:
		m.done <- s.failed
	case *noticeMsg:
		m.done <- answer{err: s.failed}
	case *resolveMsg:
		m.done <- answer{err: s.failed}
	case committedMsg:
		s.committed(m.err)
	case probeMsg:
		m.fn(s)
		close(m.done)
	}
}

// probeMsg runs fn on the shard's goroutine (tests look at its state through it).
type probeMsg struct {
	fn   func(*shard)
	done chan struct{}
}

// write puts o in the current round and answers where it stands in it.
func (s *shard) write(o *payment.Order, isNew bool) int {
	i, ok := s.cur.writes[o.ID]
	if !ok {
		i = len(s.cur.order)
		s.cur.writes[o.ID] = i
		s.cur.order = append(s.cur.order, storage.OrderWrite{Order: o})
	}
	s.cur.order[i].New = s.cur.order[i].New || isNew
	return i
}

// after runs fn once everything changed so far is durable.
func (s *shard) after(fn func(err error)) {
	if s.failed != nil {
		fn(s.failed)
		return
	}
	if s.cur.empty() && s.committing == nil {
		fn(nil)
		return
	}
	s.cur.after = append(s.cur.after, fn)
}

// run takes what an order decided: its effects run once its state is durable.
func (s *shard) run(o *payment.Order, e payment.Effects) {
	if e.Release {
		s.release(o)
	}
	if len(e.Transfers) > 0 || len(e.Calls) > 0 {
		s.cur.effects = append(s.cur.effects, effect{id: o.ID, effects: e})
	}
	s.schedule(o)
}

// release gives a failed refund's reservation back to its payment, in the same round.
func (s *shard) release(ref *payment.Order) {
	orig, err := s.load(ref.Original)
	if err != nil || orig == nil {
		s.fail(fmt.Errorf("payments: INVARIANT: refund %d: its payment %d cannot be read: %v", ref.ID, ref.Original, err))
		return
	}
	orig.Release(ref, s.now())
	s.write(orig, false)
}

// load is an order of the shard: in memory, or read from the store (and kept until the
// round that changes it is durable).
func (s *shard) load(id uint64) (*payment.Order, error) {
	o, err := s.peek(id)
	if o != nil {
		s.orders[id] = o
	}
	return o, err
}

// account reads what never changes of an account, through the shard's cache.
func (s *shard) account(id uint64) (ledger.Account, bool) {
	if a, ok := s.accounts[id]; ok {
		return a, true
	}
	a, found, err := s.e.store.Live().AccountFixed(id)
	if err != nil || !found {
		return ledger.Account{}, false
	}
	if len(s.accounts) >= AccountCacheMax {
		clear(s.accounts)
	}
	s.accounts[id] = a
	return a, true
}

// peek is an order of the shard, in memory or read from the store, not kept.
func (s *shard) peek(id uint64) (*payment.Order, error) {
	if o := s.orders[id]; o != nil {
		return o, nil
	}
	o, found, err := s.e.store.Live().Order(id)
	if err != nil || !found {
		return nil, err
	}
	return o, nil
}

// evict forgets o if it waits for nothing and no round holds it.
func (s *shard) evict(o *payment.Order) {
	if o.Active() || s.cur.holds(o.ID) || s.committing != nil && s.committing.holds(o.ID) {
		return
	}
	delete(s.orders, o.ID)
}

// versioned runs fn on o and writes o if fn changed it.
func (s *shard) versioned(o *payment.Order, fn func() payment.Effects) {
	v, n, final, dropped, txns := o.Version, len(o.Exceptions), o.State.Final(), o.Dropped, payment.TxnCount(o)
	e := fn()
	if o.Dropped != dropped {
		s.e.metrics.dropped.Inc()
		s.e.log.Warn("payments: anomaly not recorded: the order holds as many records without money as it may",
			"order", o.ID, "biz_id", o.BizID, "dropped", o.Dropped)
	}
	if o.Version != v {
		i := s.write(o, false)
		if payment.TxnCount(o) != txns {
			s.cur.order[i].Txns = true // index the txn it recorded by when (channel reconciliation)
		}
	}
	if !final && o.State.Final() {
		s.cur.final = append(s.cur.final, finalOf(o)) // counted once durable, once
	}
	for _, x := range o.Exceptions[n:] {
		s.cur.opened = append(s.cur.opened, x.Kind)
		s.e.log.Warn("payments: exception opened", "order", o.ID, "biz_id", o.BizID, "kind", x.Kind.String(),
			"txn", x.Txn, "amount", x.Amount, "note", x.Note)
	}
	s.run(o, e)
}

func (s *shard) create(m *createMsg) {
	now := s.now()
	taken := time.Now()
	r, orders := s.cur, len(s.cur.order)
	stored := make([]uint64, len(m.idx))
	if s.failed == nil {
		if err := s.storedKeys(m, stored); err != nil {
			s.fail(err)
		}
	}
	for n, i := range m.idx {
		r := &m.reqs[i]
		if s.failed != nil {
			m.replies[i] = Reply{Result: payment.ResultOverloaded}
			continue
		}
		ref := refOf(r)
		id, found := s.keys[ref]
		if !found && stored[n] != 0 {
			id, found = stored[n], true
		}
		if found {
			s.repeat(m, i, id)
			continue
		}
		if len(s.orders) >= s.e.cfg.ActiveOrdersMax {
			m.replies[i] = Reply{Result: payment.ResultOverloaded}
			continue
		}
		s.createOne(m, i, ref, now)
	}
	// Timed when it made new orders, in the round it began in (a failure in between leaves a
	// new round, which holds none of them).
	if s.cur == r && len(r.order) > orders {
		r.vouchers = append(r.vouchers, voucherWait{sent: m.sent, taken: taken})
	}
	s.after(func(err error) { m.done <- err })
}

// refOf is what r's idempotency key is unique within.
func refOf(r *payment.Request) keyRef {
	ref := keyRef{form: r.Form, original: r.Original, key: r.Key}
	if r.Form != payment.Refund {
		ref.original = 0
	}
	return ref
}

// storedKeys looks up, in the store and all at once, the keys of m's requests that name no
// order the shard holds: stored[n] is the order of m.idx[n]'s key, left 0 when none (or
// when the shard holds it).
func (s *shard) storedKeys(m *createMsg, stored []uint64) error {
	var keys []storage.OrderKey
	var at []int
	for n, i := range m.idx {
		ref := refOf(&m.reqs[i])
		if _, held := s.keys[ref]; !held {
			keys = append(keys, storage.OrderKey{Form: ref.form, Original: ref.original, Key: ref.key})
			at = append(at, n)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	ids := make([]uint64, len(keys))
	if err := s.e.store.Live().OrdersByKeys(keys, ids); err != nil {
		return err
	}
	for j, n := range at {
		stored[n] = ids[j]
	}
	return nil
}

// repeat answers a request whose key names an order: the order as it stands, or key_reused.
func (s *shard) repeat(m *createMsg, i int, id uint64) {
	o, err := s.peek(id)
	if err != nil || o == nil {
		s.fail(fmt.Errorf("payments: order %d of an idempotency key cannot be read: %v", id, err))
		m.replies[i] = Reply{Result: payment.ResultOverloaded}
		return
	}
	if !o.Same(&m.reqs[i]) {
		m.replies[i] = Reply{Result: payment.ResultKeyReused}
		return
	}
	m.replies[i] = Reply{Result: payment.ResultExists, Order: o.Clone()}
}

func (s *shard) createOne(m *createMsg, i int, ref keyRef, now uint64) {
	r := &m.reqs[i]
	var orig *payment.Order
	if r.Form == payment.Refund && r.Original != 0 {
		if s.e.shardOfID(r.Original) != s {
			m.replies[i] = Reply{Result: payment.ResultOriginalNotFound}
			return
		}
		var err error
		if orig, err = s.load(r.Original); err != nil {
			s.fail(err)
			m.replies[i] = Reply{Result: payment.ResultOverloaded}
			return
		}
	}
	id := s.lastID + uint64(s.n)
	if id > payment.OrderIDMax {
		m.replies[i] = Reply{Result: payment.ResultOverloaded}
		return
	}
	o, res := payment.New(s.e.cfg.Setup, r, id, now, s.account, orig)
	if res != payment.ResultOK {
		if orig != nil {
			s.evict(orig) // a refused refund changed nothing of its payment
		}
		m.replies[i] = Reply{Result: res}
		return
	}
	s.lastID = id
	s.orders[id] = o
	s.keys[ref] = id
	s.write(o, true)
	if orig != nil {
		s.write(orig, false)
	}
	m.replies[i] = Reply{Result: payment.ResultOK, Order: o.Clone()}
	s.run(o, o.Begin(s.e.cfg.Setup, now))
}

func (s *shard) notice(m *noticeMsg) {
	o, err := s.load(m.id)
	switch {
	case err != nil:
		s.fail(err)
		m.done <- answer{err: s.failed}
		return
	case o == nil:
		m.done <- answer{result: payment.ResultOrderNotFound}
		return
	case o.Channel != m.channel || m.notice.BizID != "" && m.notice.BizID != o.BizID:
		s.evict(o)
		m.done <- answer{result: payment.ResultChannelMismatch}
		return
	}
	var res payment.Result
	s.versioned(o, func() payment.Effects {
		var e payment.Effects
		e, res = o.OnNotice(s.e.cfg.Setup, &m.notice, s.now())
		return e
	})
	s.evict(o)
	if res != payment.ResultOK {
		m.done <- answer{result: res}
		return
	}
	s.after(func(err error) { m.done <- answer{result: res, err: err} })
}

func (s *shard) resolve(m *resolveMsg) {
	o, err := s.load(m.id)
	if err != nil {
		s.fail(err)
		m.done <- answer{err: s.failed}
		return
	}
	if o == nil {
		m.done <- answer{result: payment.ResultOrderNotFound}
		return
	}
	var res payment.Result
	s.versioned(o, func() payment.Effects {
		var e payment.Effects
		e, res = o.Resolve(s.e.cfg.Setup, m.index, m.how, m.note, s.now())
		return e
	})
	c := o.Clone()
	s.evict(o)
	s.after(func(err error) { m.done <- answer{result: res, order: c, err: err} })
}

// answerOf maps a gateway's outcome kind to the order's.
func answerOf(k gateway.OutcomeKind) payment.Answer {
	switch k {
	case gateway.Answered:
		return payment.Answered
	case gateway.Rejected:
		return payment.Rejected
	}
	return payment.Unanswered
}

func (s *shard) outcome(m outcomeMsg) {
	o := s.orders[m.id]
	if o == nil {
		return // an order that waits for nothing: a late answer changes nothing
	}
	if m.outcome.Kind != gateway.Answered {
		s.e.log.Info("payments: channel call without an answer", "order", o.ID, "biz_id", o.BizID,
			"channel", o.Channel, "order_no", m.outcome.Call.Request.OrderNo, "query", m.outcome.Call.Query,
			"outcome", m.outcome.Kind.String(), "err", m.outcome.Err)
	}
	call := payment.Call{Request: m.outcome.Call.Request, Query: m.outcome.Call.Query}
	s.versioned(o, func() payment.Effects {
		return o.OnChannel(s.e.cfg.Setup, call, answerOf(m.outcome.Kind), m.outcome.Result, s.now())
	})
}

// ledgerResults takes the ledger's answers to a batch: transient ones are sent again later,
// final ones go to their orders. Each run of one order's transfers in the batch goes to the
// order as it is, without a copy unless some of it must be sent again. An order may have
// several runs in a batch (two rounds' submits, or retries gathered from several batches):
// it takes each as a partial answer, as it takes retried transfers answered later.
func (s *shard) ledgerResults(m ledgerMsg) {
	now := s.now()
	if m.err != nil {
		s.e.log.Warn("payments: the ledger did not take a batch; sending it again", "shard", s.id, "err", m.err)
		s.retry(m.ts, now)
		return
	}
	for i := 0; i < len(m.ts); {
		id, _, _ := payment.StepOf(m.ts[i].ID)
		j := i + 1
		for j < len(m.ts) {
			if next, _, _ := payment.StepOf(m.ts[j].ID); next != id {
				break
			}
			j++
		}
		ts, rs := m.ts[i:j], m.rs[i:j]
		i = j
		if slices.ContainsFunc(rs, payment.Retryable) {
			var keepT []ledger.Transfer
			var keepR []ledger.TransferResult
			for k, r := range rs {
				if payment.Retryable(r) {
					s.retry(ts[k:k+1], now)
				} else {
					keepT, keepR = append(keepT, ts[k]), append(keepR, r)
				}
			}
			ts, rs = keepT, keepR
		}
		o := s.orders[id]
		if o == nil || len(ts) == 0 {
			continue // resumed and answered already, or all to be sent again
		}
		s.versioned(o, func() payment.Effects { return o.OnTransfers(s.e.cfg.Setup, ts, rs, now) })
	}
}

// retry queues transfers to be sent to the ledger again after RetryAfter.
func (s *shard) retry(ts []ledger.Transfer, now uint64) {
	if len(s.retries) == 0 {
		s.retryAt = now + uint64(RetryAfter)
	}
	s.retries = append(s.retries, ts...)
}

func (s *shard) tick() {
	now := s.now()
	if len(s.retries) > 0 && now >= s.retryAt {
		ts := s.retries
		s.retries = nil
		s.pipe.submit(ts)
	}
	for len(s.due) > 0 && s.due[0].at <= now {
		d := heap.Pop(&s.due).(dueEntry)
		if s.sched[d.id] != d.at {
			continue // superseded by an earlier entry
		}
		delete(s.sched, d.id)
		o := s.orders[d.id]
		if o == nil || !o.Active() {
			continue
		}
		e := o.Tick(s.e.cfg.Setup, now)
		if len(e.Calls) > 0 {
			s.cur.effects = append(s.cur.effects, effect{id: o.ID, effects: e})
		}
		s.schedule(o)
	}
	// Every tick: the in-flight gauge is how a load test knows the last order is done (it
	// was refreshed every 10 ticks, and a run's end read up to a second late). A scan of
	// 200,000 orders takes about a millisecond.
	s.gauges()
	s.flush()
}

// schedule remembers when o next wants its tick.
func (s *shard) schedule(o *payment.Order) {
	at, ok := nextDue(o)
	if !ok {
		return
	}
	if prev, scheduled := s.sched[o.ID]; scheduled && prev <= at {
		return // its tick comes first; Tick looks at what is due then
	}
	s.sched[o.ID] = at
	heap.Push(&s.due, dueEntry{at: at, id: o.ID})
}

func nextDue(o *payment.Order) (uint64, bool) {
	at, ok := uint64(0), false
	if o.Stage == payment.StageAwait {
		at, ok = o.Next, true
	}
	for i := range o.Exceptions {
		if x := &o.Exceptions[i]; x.Step == payment.ExcRefunding && (!ok || x.Next < at) {
			at, ok = x.Next, true
		}
	}
	return at, ok
}

func (s *shard) gauges() {
	oldest := int64(0)
	active := 0
	for _, o := range s.orders {
		if o.Active() {
			active++
			if c := int64(o.Created); oldest == 0 || c < oldest {
				oldest = c
			}
		}
	}
	s.activeGauge.Store(int64(active))
	s.oldestGauge.Store(oldest)
}

// full reports whether the current round holds RoundOrdersMax orders or more while the last
// one commits: it may grow no more (one message may take it past the bound by what it
// writes, at most CreateBatchMax orders and their originals).
func (s *shard) full() bool { return s.committing != nil && len(s.cur.order) >= RoundOrdersMax }

// flush starts the commit of the current round when none is running.
func (s *shard) flush() {
	if s.committing != nil || s.cur.empty() || s.failed != nil {
		return
	}
	r := s.cur
	s.cur = newRound()
	s.committing = r
	r.sealed = time.Now()
	if len(r.order) == 0 {
		s.committed(nil)
		return
	}
	// The committer encodes a copy: the shard goes on changing its orders.
	s.commits <- commitJob{writes: copyRound(r.order), lastID: s.lastID}
}

func (s *shard) committer() {
	for job := range s.commits {
		if h := s.e.commitHook.Load(); h != nil {
			(*h)(len(job.writes))
		}
		start := time.Now()
		var mark uint64
		if s.e.cfg.Events != nil {
			mark = s.e.cfg.Events.Begin()
		}
		err := s.writer.Commit(job.writes, job.lastID)
		if sink := s.e.cfg.Events; err == nil && sink != nil {
			if lr := s.writer.LastRound(); lr.Events > 0 {
				var ev *storage.RoundEvents
				if sink.Capturing() {
					ev = s.writer.LastEvents(job.writes) // the job's orders are copies
				}
				sink.Committed(lr, mark, ev)
			}
		}
		s.e.metrics.commitSeconds.Observe(time.Since(start).Seconds())
		s.e.metrics.commitOrders.Observe(float64(len(job.writes)))
		s.durable <- committedMsg{err: err}
	}
}

// committed runs what waited for the round that is now durable.
func (s *shard) committed(err error) {
	durable := time.Now() // before any reply: the vouchers' commit stage ends here
	r := s.committing
	s.committing = nil
	if err != nil {
		s.fail(err)
	}
	for _, fn := range r.after {
		fn(s.failed)
	}
	if s.failed != nil {
		return
	}
	for _, w := range r.order {
		o := w.Order
		if w.New {
			delete(s.keys, keyRef{form: o.Form, original: refOriginal(o), key: o.Key})
		}
	}
	for _, o := range r.final {
		s.e.metrics.final(o)
	}
	for _, k := range r.opened {
		s.e.metrics.exceptions.WithLabelValues(k.String()).Inc()
	}
	for _, e := range r.effects {
		s.effects(e)
	}
	for _, w := range r.order {
		o := w.Order
		s.evict(o)
	}
	s.flush()
	// Timed last: nothing of the round (its effects, the next commit) waits for the metric.
	s.e.metrics.vouchers(r.vouchers, r.sealed, durable)
}

func refOriginal(o *payment.Order) uint64 {
	if o.Form == payment.Refund {
		return o.Original
	}
	return 0
}

// effects sends an order's transfers to the ledger and its calls to the channel.
func (s *shard) effects(e effect) {
	if len(e.effects.Transfers) > 0 {
		s.pipe.submit(e.effects.Transfers)
	}
	for _, c := range e.effects.Calls {
		o := s.orders[e.id]
		g := s.e.gateways[o.Channel]
		if g == nil {
			// The channel is no longer configured: nothing is sent (the order of a request
			// never sent fails; one that was sent keeps asking until the channel is back).
			s.e.log.Error("payments: order of a channel that is not configured", "order", o.ID, "biz_id", o.BizID,
				"channel", o.Channel)
			s.outcome(outcomeMsg{id: o.ID, outcome: gateway.Outcome{Call: gateway.Call{Request: c.Request, Query: c.Query},
				Kind: gateway.Rejected, Err: ErrUnknownChannel}})
			continue
		}
		if c.Query {
			s.e.metrics.queries.WithLabelValues(o.Channel).Inc()
		}
		g.Submit(gateway.Call{Request: c.Request, Query: c.Query})
	}
}

// fail stops the shard taking work after a storage failure: the process must restart.
func (s *shard) fail(err error) {
	if s.failed != nil {
		return
	}
	s.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	s.e.log.Error("payments: shard failed; restart the process", "shard", s.id, "err", err)
	// What waits for the round not yet committed is answered with the failure: that round
	// never commits (its changes and effects are dropped; the orders resume from their
	// durable state after the restart).
	r := s.cur
	s.cur = newRound()
	for _, fn := range r.after {
		fn(s.failed)
	}
}

// copyRound copies a round's writes, their orders deeply as payment.Order.Clone does (a
// slice field added to the order must be copied by both), for the committer (and the event
// stream, which keeps them): in four allocations however many orders, where a clone of each
// made three apiece.
func copyRound(ws []storage.OrderWrite) []storage.OrderWrite {
	out := make([]storage.OrderWrite, len(ws))
	orders := make([]payment.Order, len(ws))
	var ni, nx int
	for _, w := range ws {
		ni, nx = ni+len(w.Order.Instruments), nx+len(w.Order.Exceptions)
	}
	ins := make([]payment.Instrument, 0, ni)
	exc := make([]payment.Exception, 0, nx)
	for i, w := range ws {
		o := &orders[i]
		*o = *w.Order
		o.Instruments, o.Exceptions = nil, nil
		if n := len(w.Order.Instruments); n > 0 {
			ins = append(ins, w.Order.Instruments...)
			o.Instruments = ins[len(ins)-n : len(ins) : len(ins)]
		}
		if n := len(w.Order.Exceptions); n > 0 {
			exc = append(exc, w.Order.Exceptions...)
			o.Exceptions = exc[len(exc)-n : len(exc) : len(exc)]
		}
		out[i] = storage.OrderWrite{Order: o, New: w.New, Txns: w.Txns}
	}
	return out
}

// dueEntry is an order that wants its tick at a time.
type dueEntry struct {
	at uint64
	id uint64
}

type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
