// Package day runs one accounting day of simulated payments end to end, in one process: the
// ledger on its embedded store, the payment actors, a simulated channel on loopback that
// injects anomalies (duplicate payments, amount mismatches, and statement faults: lines
// left out, wrong amounts, wrong statuses, lines no one asked for), then end of day, the
// channel's statement imported, and the internal three-way check of every biz id. It
// compares what reconciliation found with what the channel injected: each anomaly must be
// found exactly where it belongs, once, and nothing else reported.
//
// A day takes a day: the run keeps its own clock (the machine's, shifted), which starts on
// the morning of the day simulated and is moved past midnight once every order is final,
// so that end of day and the statement import run as they would the next morning. Every
// component reads that one clock; nothing else is simulated. The store stays behind:
// ledgerd started on it serves the day's books, records and exceptions.
package day

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/nrtrecon"
	"github.com/ledgercore/ledger/storage"
)

// currency is the day's ledger 1's.
const currency = "CNY"

// Account codes of the default chart the day opens accounts under (ledgerctl chart).
const (
	codeUser     = 2001
	codeMerchant = 2002
	codeCoupon   = 2004
)

// Ids of the accounts the day opens: users from userBase, merchants from merchantBase.
const (
	userBase     = 1
	merchantBase = 10_001
	couponID     = 20_001
)

// Bounds of a day's size.
const (
	ShardsDefault = 4
	UsersMax      = 10_000
	OrdersMax     = 100_000
	// createBatch is how many requests go to the payment actors at once.
	createBatch = 64
	// gatewayTimeout bounds an exchange with the channel: loose, so that a loaded machine
	// (tests under -race) does not make unknown outcomes of its own.
	gatewayTimeout = 2 * time.Second
	// reconWindow and reconGrace are near-real-time reconciliation's window and grace (on
	// the run's clock): the day's orders settle within a window of their first event, and
	// the windows still open at midnight close when the clock moves.
	reconWindow = 10 * time.Minute
	reconGrace  = time.Second
	// runAfterMidnight is how long after the day's end the run imports its statement (past
	// the statement's midnight tolerance, payment.StatementTolerance).
	runAfterMidnight = 10 * time.Minute
	// settlePoll is how often the run reads its orders while it waits for them to settle;
	// settleQuiet is how long nothing must settle before the clock skips to the next query.
	settlePoll  = 20 * time.Millisecond
	settleQuiet = 200 * time.Millisecond
)

// Config is a day to run.
type Config struct {
	// Dir is the store's directory; it must not hold a store already.
	Dir string
	// Date is the accounting day simulated (the new store's first day). It must have ended
	// on the machine's clock, so that the store is not ahead of it when ledgerd opens it.
	Date ledger.Day
	// Seed decides the orders and, with each request, the channel's faults.
	Seed uint64
	// Users pay Merchants (5); Orders are the orders of the day after each user's first
	// recharge; a fifth of the succeeded payments are then partly refunded.
	Users, Orders int
	// Channel names the simulated channel ("demo" when empty).
	Channel string
	// Faults are the channel's rates: FailRate, TimeoutRate, DupCallbackRate, DupPayRate,
	// MismatchRate and the statement faults (Secret, Seed, Now and the limits are the run's).
	Faults fake.Config
	// SettleTimeout bounds each wait for the orders to settle (0: 2 minutes).
	SettleTimeout time.Duration
	// Shards of the new store (0: ShardsDefault: transfers between users split over shards).
	Shards uint32
	// Log takes the components' logs (nil: discarded); Progress, a line per phase (nil: none).
	Log      *slog.Logger
	Progress io.Writer
}

// clock is the run's: the machine's, shifted by an offset the run moves forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time  { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) nanos() uint64   { return uint64(c.now().UnixNano()) }
func (c *clock) set(t time.Time) { c.offset.Store(int64(time.Until(t))) }

// run is one day's world.
type run struct {
	cfg    Config
	clock  *clock
	store  *storage.Store
	seq    *events.Sequencer
	recon  *nrtrecon.Runner
	ledger *actors.Ledger
	engine *payments.Engine
	fake   *fake.Server
	notify *http.Server
	eod    *eod.Runner
	chart  *rules.Chart
	fatal  atomic.Pointer[error]
	r      *mrand.Rand
	rep    *Report
}

func (c *Config) check(now time.Time) error {
	if c.Dir == "" {
		return errors.New("day: no directory")
	}
	if c.Date == 0 {
		return errors.New("day: no date")
	}
	if !c.Date.Valid() || c.Date.Next() == 0 {
		return fmt.Errorf("day: %v is not a day with a next day", c.Date)
	}
	if end := dayTime(c.Date.Next()).Add(runAfterMidnight); !now.After(end) {
		return fmt.Errorf("day: %v must have ended %v before now (UTC): the run's clock ends at %s the next morning, "+
			"and a store must not be ahead of the machine's clock", c.Date, runAfterMidnight, end.Format(time.RFC3339))
	}
	if c.Users < 2 || c.Users > UsersMax {
		return fmt.Errorf("day: users must be 2 to %d, not %d", UsersMax, c.Users)
	}
	if c.Orders < 0 || c.Orders > OrdersMax {
		return fmt.Errorf("day: orders must be 0 to %d, not %d", OrdersMax, c.Orders)
	}
	if c.Channel == "" {
		c.Channel = "demo"
	}
	if c.SettleTimeout == 0 {
		c.SettleTimeout = 2 * time.Minute
	}
	if c.Shards == 0 {
		c.Shards = ShardsDefault
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// Run runs the day and reports what was injected and what was found. An error is a run
// that could not be made (a store that would not open, orders that never settled); a
// reconciliation that differs from the injected anomalies is a Report that is not Exact.
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	if err := cfg.check(time.Now()); err != nil {
		return nil, err
	}
	w := &run{cfg: cfg, clock: &clock{}, r: mrand.New(mrand.NewPCG(cfg.Seed, 0xda7)), rep: &Report{Date: cfg.Date}}
	w.clock.set(dayTime(cfg.Date).Add(9 * time.Hour))
	if err := w.start(); err != nil {
		return nil, errors.Join(err, w.stop())
	}
	defer func() { err = errors.Join(err, w.stop()) }()
	if err := w.day(ctx); err != nil {
		return w.rep, err
	}
	return w.rep, w.failed()
}

func (w *run) failed() error {
	if p := w.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

func (w *run) progress(format string, args ...any) {
	fmt.Fprintf(w.cfg.Progress, format+"\n", args...)
}

func (w *run) start() error {
	cfg := w.cfg
	if ents, err := os.ReadDir(cfg.Dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("day: %s is not empty: a day runs on a new store", cfg.Dir)
	}
	// The simulated channel first: a bad rate is refused before a store is made.
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // never fails (crypto/rand)
	fc := cfg.Faults
	fc.Secret, fc.Seed, fc.Now, fc.Logger = secret, cfg.Seed, w.clock.now, cfg.Log.With("fake_channel", cfg.Channel)
	fc.MaxRecords = 4*(cfg.Users+cfg.Orders) + 1000
	fc.MaxPendingCallbacks = fc.MaxRecords
	fc.NoticeBatch = max(fc.NoticeBatch, 16)
	if fc.Latency == 0 {
		fc.Latency = 5 * time.Millisecond
	}
	if fc.TimeoutHold == 0 {
		fc.TimeoutHold = gatewayTimeout + time.Second // an answer held back is lost to the gateway
	}
	var err error
	if w.fake, err = fake.Start("127.0.0.1:0", fc); err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer func() {
		if w.notify == nil {
			_ = lis.Close()
		}
	}()
	if w.store, err = storage.Open(cfg.Dir, storage.Options{Shards: cfg.Shards}); err != nil {
		return err
	}
	fatal := func(err error) { w.fatal.CompareAndSwap(nil, &err) }
	if w.seq, err = events.Start(w.store, events.Config{Fatal: fatal}); err != nil {
		return err
	}
	if w.ledger, err = actors.Start(w.store, actors.Config{Shards: w.store.Shards(), Now: w.clock.nanos, FirstDay: cfg.Date,
		Events: w.seq, Fatal: fatal}); err != nil {
		return err
	}
	w.chart = rules.Default()
	setup, err := payment.NewSetup(w.chart, payment.DefaultCodes, []string{cfg.Channel})
	if err != nil {
		return err
	}
	setup.Currencies = map[uint32]string{1: currency}
	client := channel.NewHTTPClient(w.fake.URL(), "http://"+lis.Addr().String()+payments.NotifyPath+cfg.Channel,
		&http.Client{Timeout: 3 * time.Second, Transport: channel.NewHTTPTransport(64)})
	secrets := map[string][]byte{cfg.Channel: secret}
	w.engine, err = payments.Start(w.store, w.ledger, payments.Config{Setup: setup, Ledgers: []uint32{1}, Now: w.clock.nanos,
		Clients: map[string]channel.Client{cfg.Channel: client}, Secrets: secrets, Logger: cfg.Log,
		Gateway: gateway.Config{Timeout: gatewayTimeout, RateLimit: 1e6, Burst: 1000, MaxInFlight: 64, QueueLimit: 4096},
		Tick:    20 * time.Millisecond, Events: w.seq})
	if err != nil {
		return err
	}
	w.recon, err = nrtrecon.Start(nrtrecon.Config{Seq: w.seq, Store: w.store, Setup: setup, Now: w.clock.nanos, Logger: cfg.Log,
		Matcher: recon.Config{Window: uint64(reconWindow)}, Grace: reconGrace,
		Confirm: func(biz string) ([]payment.Difference, error) {
			r, err := w.engine.Reconcile(biz)
			return r.Differences, err
		}})
	if err != nil {
		return err
	}
	w.notify = &http.Server{Handler: w.engine.NotifyHandler(secrets), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.notify.Serve(lis) }() // ends with Close
	w.eod = eod.NewRunner(w.ledger, w.store, eod.Config{Chart: w.chart, Now: w.clock.now, Log: cfg.Log})
	return nil
}

func (w *run) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if w.recon != nil {
		w.recon.Stop()
	}
	if w.notify != nil {
		errs = append(errs, w.notify.Close())
	}
	if w.engine != nil {
		errs = append(errs, w.engine.Stop(ctx))
	}
	if w.fake != nil {
		errs = append(errs, w.fake.Close(ctx))
	}
	if w.ledger != nil {
		w.ledger.Stop()
	}
	if w.seq != nil {
		w.seq.Stop()
	}
	if w.store != nil {
		errs = append(errs, w.store.Close())
	}
	return errors.Join(errs...)
}

// day is the day's phases.
func (w *run) day(ctx context.Context) error {
	cfg, rep := w.cfg, w.rep
	w.progress("day %v: %d users, %d orders, seed %d, store %s", cfg.Date, cfg.Users, cfg.Orders, cfg.Seed, cfg.Dir)
	if err := w.openAccounts(); err != nil {
		return err
	}
	funding := make([]payment.Request, cfg.Users)
	for u := range funding {
		funding[u] = payment.Request{Key: fmt.Sprintf("fund-%d", u), BizID: fmt.Sprintf("fund-%d", u), Form: payment.Recharge,
			Ledger: 1, Amount: uint64(200_00 + w.r.IntN(800_00)), To: userBase + uint64(u), Channel: cfg.Channel,
			ChannelAccount: fmt.Sprintf("card-%d", u)}
	}
	ids, err := w.create(funding)
	if err != nil {
		return err
	}
	if _, err := w.settle(ctx, ids); err != nil {
		return err
	}
	w.progress("  %d recharges funded the users", len(ids))
	reqs := make([]payment.Request, cfg.Orders)
	for n := range reqs {
		reqs[n] = w.order(n)
	}
	more, err := w.create(reqs)
	if err != nil {
		return err
	}
	ids = append(ids, more...)
	done, err := w.settle(ctx, ids)
	if err != nil {
		return err
	}
	var refunds []payment.Request
	for _, o := range done {
		if o.Form == payment.Pay && o.State == payment.Succeeded && w.r.IntN(5) == 0 {
			refunds = append(refunds, payment.Request{Key: fmt.Sprintf("refund-%d", o.ID), BizID: o.BizID, Form: payment.Refund,
				Amount: 1 + uint64(w.r.Int64N(int64(o.Amount))), Original: o.ID})
		}
	}
	more, err = w.create(refunds)
	if err != nil {
		return err
	}
	ids = append(ids, more...)
	if done, err = w.settle(ctx, ids); err != nil {
		return err
	}
	rep.count(done)
	w.progress("  %d orders final", len(done))
	rep.PayFaults = w.fake.PayFaults()
	rep.StatementFaults = w.fake.StatementFaults(cfg.Date.String())

	// The next morning: end of day, then the statement (a day is imported once it has ended
	// and the midnight tolerance has passed).
	w.clock.set(dayTime(cfg.Date.Next()).Add(30 * time.Second))
	res, err := w.eod.Run(ctx, cfg.Date, eod.Options{})
	if err != nil {
		return fmt.Errorf("end of day: %w", err)
	}
	rep.EndOfDay = res
	w.progress("  end of day: %v", res.Outcome)
	w.clock.set(dayTime(cfg.Date.Next()).Add(runAfterMidnight))
	st, err := w.engine.ImportStatement(ctx, cfg.Channel, cfg.Date.String())
	if err != nil {
		return fmt.Errorf("statement: %w", err)
	}
	rep.Statement = st
	w.progress("  statement of %v: %d lines, %d differences", cfg.Date, st.Lines, len(st.Differences))
	if err := w.reconciled(ctx); err != nil {
		return err
	}
	if err := w.collect(ids); err != nil {
		return err
	}
	rep.judge()
	return nil
}

func (w *run) openAccounts() error {
	var as []ledger.Account
	for u := range w.cfg.Users {
		as = append(as, ledger.Account{ID: userBase + uint64(u), Ledger: 1, Code: codeUser, Flags: ledger.AccountDebitsMustNotExceedCredits})
	}
	for m := range merchants {
		as = append(as, ledger.Account{ID: merchantBase + uint64(m), Ledger: 1, Code: codeMerchant, Flags: ledger.AccountDebitsMustNotExceedCredits})
	}
	as = append(as, ledger.Account{ID: couponID, Ledger: 1, Code: codeCoupon})
	for len(as) > 0 {
		n := min(len(as), ledger.BatchEventsMax)
		rs, err := w.ledger.CreateAccounts(as[:n])
		if err != nil {
			return err
		}
		for i, r := range rs {
			if r != ledger.AccountResultOK {
				return fmt.Errorf("day: account %d: %v", as[i].ID, r)
			}
		}
		as = as[n:]
	}
	return nil
}

// merchants is how many merchants the users pay.
const merchants = 5

// order is the day's order n: a payment (card, balance, or coupon + balance + card), a
// recharge, a withdrawal or a transfer between users.
func (w *run) order(n int) payment.Request {
	cfg := w.cfg
	u := uint64(w.r.IntN(cfg.Users))
	req := payment.Request{Key: fmt.Sprintf("order-%d", n), BizID: fmt.Sprintf("biz-%d", n), Ledger: 1, Channel: cfg.Channel,
		ChannelAccount: fmt.Sprintf("card-%d", u)}
	amount := uint64(1_00 + w.r.IntN(150_00))
	switch p := w.r.IntN(100); {
	case p < 50:
		req.Form, req.Amount, req.From, req.To = payment.Pay, amount, userBase+u, merchantBase+uint64(w.r.IntN(merchants))
		switch w.r.IntN(3) {
		case 0:
			req.Instruments = []payment.Instrument{{Kind: payment.Card, Amount: amount}}
		case 1:
			req.Instruments = []payment.Instrument{{Kind: payment.Balance, Amount: amount}}
		default:
			coupon := amount / 10
			balance := (amount - coupon) / 2
			req.Instruments = []payment.Instrument{{Kind: payment.Coupon, Amount: coupon, Account: couponID},
				{Kind: payment.Balance, Amount: balance}, {Kind: payment.Card, Amount: amount - coupon - balance}}
			if coupon == 0 {
				req.Instruments = req.Instruments[1:]
			}
		}
	case p < 65:
		req.Form, req.Amount, req.To = payment.Recharge, amount, userBase+u
	case p < 85:
		req.Form, req.Amount, req.From = payment.Withdraw, amount/2, userBase+u
		req.ChannelAccount = fmt.Sprintf("bank-%d", u)
	default:
		to := (u + 1 + uint64(w.r.IntN(max(cfg.Users-1, 1)))) % uint64(cfg.Users)
		req.Form, req.Amount, req.From, req.To = payment.Transfer, amount/4, userBase+u, userBase+to
		req.Channel, req.ChannelAccount = "", ""
	}
	return req
}

// create hands reqs to the payment actors and answers their orders' ids; every request must
// be taken (each is valid: a refusal is a bug the run reports).
func (w *run) create(reqs []payment.Request) ([]uint64, error) {
	var ids []uint64
	for len(reqs) > 0 {
		n := min(len(reqs), createBatch)
		rs, err := w.engine.Create(reqs[:n])
		if err != nil {
			return nil, err
		}
		for i, r := range rs {
			if r.Result != payment.ResultOK {
				return nil, fmt.Errorf("day: order %q refused: %v", reqs[i].Key, r.Result)
			}
			ids = append(ids, r.Order.ID)
		}
		reqs = reqs[n:]
	}
	return ids, nil
}

// settle waits until every order of ids is final and waits for nothing more (its exception
// records' refunds included), and answers them. When every order still waiting waits for
// its next query to the channel (a timer on the run's clock, backing off up to
// payment.QueryBackoffMax), the clock moves to the earliest such timer instead of the run
// waiting for it in real time; never past the day's last hour.
func (w *run) settle(ctx context.Context, ids []uint64) ([]*payment.Order, error) {
	deadline := time.Now().Add(w.cfg.SettleTimeout)
	lastWaiting, since := -1, time.Now()
	for {
		if err := w.failed(); err != nil {
			return nil, err
		}
		done, err := w.engine.Orders(ids)
		if err != nil {
			return nil, err
		}
		waiting := 0
		var first *payment.Order
		now := w.clock.nanos()
		skipTo, skippable := uint64(0), true
		for i, o := range done {
			if o == nil {
				return nil, fmt.Errorf("day: order %d not found", ids[i])
			}
			if !o.State.Final() || o.Active() {
				waiting++
				first = cmp.Or(first, o)
				t := nextTimer(o, now)
				skippable = skippable && t > 0
				if t > 0 && (skipTo == 0 || t < skipTo) {
					skipTo = t
				}
			}
		}
		if waiting == 0 {
			return done, nil
		}
		if waiting != lastWaiting {
			lastWaiting, since = waiting, time.Now()
		}
		if skippable && time.Since(since) > settleQuiet && skipTo < uint64(dayTime(w.cfg.Date.Next()).Add(-time.Hour).UnixNano()) {
			w.clock.set(time.Unix(0, int64(skipTo)))
			since = time.Now()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("day: %d orders did not settle in %v; order %d is %v at %v", waiting, w.cfg.SettleTimeout,
				first.ID, first.State, first.Stage)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(settlePoll):
		}
	}
}

// nextTimer is when order o next asks the channel (its own request, or an exception
// record's refund) if that is later than now, else 0 (it is doing something now).
func nextTimer(o *payment.Order, now uint64) uint64 {
	t := uint64(0)
	if o.Stage == payment.StageAwait && o.Next > now {
		t = o.Next
	}
	for k := range o.Exceptions {
		x := &o.Exceptions[k]
		if x.Step == payment.ExcRefunding && x.Next > now && (t == 0 || x.Next < t) {
			t = x.Next
		}
	}
	return t
}

// reconciled waits until near-real-time reconciliation has read every event and closed and
// recorded every window (the clock is past midnight: idle windows close), and stops it.
func (w *run) reconciled(ctx context.Context) error {
	r := w.recon
	deadline := time.Now().Add(w.cfg.SettleTimeout)
	for r.Lag() > 0 || r.Stats.Tracked.Load() > 0 || r.Stats.Checkpoint.Load()+1 < r.Stats.Next.Load() {
		if time.Now().After(deadline) {
			return fmt.Errorf("day: near-real-time reconciliation did not finish in %v: lag %d, %d biz ids tracked, checkpoint %d, next %d",
				w.cfg.SettleTimeout, r.Lag(), r.Stats.Tracked.Load(), r.Stats.Checkpoint.Load(), r.Stats.Next.Load())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(settlePoll):
		}
	}
	r.Stop()
	w.recon = nil
	w.rep.ReconMatched = r.Stats.Matched.Load()
	w.progress("  near-real-time reconciliation: %d windows matched, %d findings", w.rep.ReconMatched, r.Stats.Recorded.Load())
	return nil
}

// collect reads what reconciliation recorded: the orders' exception records, the
// statement's records, and the three-way check of every biz id.
func (w *run) collect(ids []uint64) error {
	rep := w.rep
	// The orders as they stand now: the statement's import may have applied lines as
	// callbacks (its report says how many), opening records.
	done, err := w.engine.Orders(ids)
	if err != nil {
		return err
	}
	for i, o := range done {
		if o == nil {
			return fmt.Errorf("day: order %d not found", ids[i])
		}
		for k, x := range o.Exceptions {
			rep.Exceptions = append(rep.Exceptions, ExceptionFound{Order: o.ID, Index: k, Kind: x.Kind, Step: x.Step, Txn: x.Txn, Amount: x.Amount})
		}
	}
	// Every record, a page at a time (each list answers at most payments.ListMax).
	var after payment.StatementRecord
	after.Channel = w.cfg.Channel
	for {
		recs, err := w.engine.StatementExceptions(true, after.Channel, after.Day, after.Txn, payments.ListMax)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Channel == w.cfg.Channel {
				rep.StatementRecords = append(rep.StatementRecords, *r)
			}
		}
		if len(recs) < payments.ListMax {
			break
		}
		after = *recs[len(recs)-1]
	}
	var biz string
	var kind recon.Kind
	var first uint64
	for {
		fs, err := w.engine.ReconFindings(true, biz, kind, first, payments.ListMax)
		if err != nil {
			return err
		}
		for _, f := range fs {
			rep.ReconFindings = append(rep.ReconFindings, *f)
		}
		if len(fs) < payments.ListMax {
			break
		}
		last := fs[len(fs)-1]
		biz, kind, first = last.BizID, last.Kind, last.First
	}
	bizs := map[string]bool{}
	for _, o := range done {
		bizs[o.BizID] = true
	}
	for _, biz := range slices.Sorted(maps.Keys(bizs)) {
		r, err := w.engine.Reconcile(biz)
		if err != nil {
			return err
		}
		rep.BizIDs++
		for _, d := range r.Differences {
			rep.ThreeWay = append(rep.ThreeWay, ThreeWayFound{BizID: biz, Difference: d})
		}
	}
	return nil
}

// dayTime is the instant d begins (UTC).
func dayTime(d ledger.Day) time.Time {
	t, _ := time.Parse(time.DateOnly, d.String()) // a valid day's String parses
	return t
}
