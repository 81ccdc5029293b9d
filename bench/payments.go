package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// Workloads.
const (
	Transfers = "transfers" // ledger transfers between plain accounts (LedgerService.CreateTransfers)
	Payments  = "payments"  // payment orders (PaymentService.CreatePayments)
)

// Modes of --channel-down.
const (
	ChannelDegraded = "degraded"
	ChannelDead     = "dead"
)

// DefaultMix is the payments workload's mix of forms, in percent of the orders: payments
// (a third card only, a third balance only, a third coupon + balance + card), recharges,
// withdrawals, refunds (of a payment accepted at least RefundAfter earlier) and transfers.
const DefaultMix = "pay=40,recharge=25,withdraw=15,refund=10,transfer=10"

// Defaults and constants of the payments workload.
const (
	PaymentsBatchDefault = 100 // --batch when the flag is not given
	// FundAmount is what each user is recharged with before the measured orders.
	FundAmount = 100_000_000
	// RefundAfter is how old a payment must be before a refund is made of it: by then it
	// has (almost always) succeeded. When no payment is that old, a payment is made instead.
	RefundAfter = 500 * time.Millisecond
	// couponAccounts and merchantsPerUser size the other party accounts.
	couponAccounts   = 8
	merchantsPerUser = 0.05
	// backgroundUsers are the payers of --background-orders.
	backgroundUsers = 100
	countPeriod     = 100 * time.Millisecond
	// samplePeriod is how often the run reads the order counters for its series: each
	// reading gathers every metric (over HTTP from a ledgerd), about 7% of ledgerd's CPU at
	// 100 ms.
	samplePeriod = 500 * time.Millisecond
	// drainPoll is how often the end of the run reads the order counters: each reading
	// gathers every metric (over HTTP from a ledgerd), which competes with the run for CPU.
	drainPoll       = 50 * time.Millisecond
	fundInFlightMax = 500
)

// diff is a - b, for the counts that grew.
func diff(a, b map[string]float64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range a {
		if d := int64(v - b[k]); d > 0 {
			out[k] = d
		}
	}
	return out
}

// forms of the mix, in its order.
var mixForms = []string{"pay", "recharge", "withdraw", "refund", "transfer"}

// parseMix reads "pay=40,recharge=25,..." into cumulative weights by mixForms.
func parseMix(s string) ([]float64, error) {
	weights := make([]float64, len(mixForms))
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		i := slices.Index(mixForms, k)
		w, err := strconv.ParseFloat(v, 64)
		if !ok || i < 0 || err != nil || w < 0 {
			return nil, fmt.Errorf("--mix: want FORM=WEIGHT with forms %s, not %q", strings.Join(mixForms, ", "), kv)
		}
		weights[i] = w
	}
	sum := 0.0
	for i, w := range weights {
		sum += w
		weights[i] = sum
	}
	if sum <= 0 {
		return nil, errors.New("--mix: the weights add up to 0")
	}
	for i := range weights {
		weights[i] /= sum
	}
	return weights, nil
}

func (c *Config) validatePayments() []error {
	var errs []error
	if c.Workload == Payments {
		if c.Orders < 1 {
			errs = append(errs, fmt.Errorf("--orders must be positive, not %d", c.Orders))
		}
		if c.Batch < 1 || c.Batch > api.PaymentRequestsMax {
			errs = append(errs, fmt.Errorf("--batch must be 1 to %d with the payments workload, not %d",
				api.PaymentRequestsMax, c.Batch))
		}
		if c.Mix == "" {
			c.Mix = DefaultMix
		}
		if _, err := parseMix(c.Mix); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Channel == "" {
		c.Channel = "demo"
	}
	if c.ChannelRate <= 0 {
		c.ChannelRate = 100_000
	}
	if c.ChannelInFlight <= 0 {
		c.ChannelInFlight = 256
	}
	if c.ChannelTimeout <= 0 {
		c.ChannelTimeout = 5 * time.Second
	}
	if c.CallbackConcurrency <= 0 {
		c.CallbackConcurrency = 64
	}
	if c.ChannelBatch <= 0 {
		c.ChannelBatch = 64
	}
	if c.NoticeBatch <= 0 {
		c.NoticeBatch = 64
	}
	if c.ChannelLinger < 0 || c.ChannelLinger > gateway.LingerMax {
		errs = append(errs, fmt.Errorf("--channel-linger must be 0 to %v, not %v", gateway.LingerMax, c.ChannelLinger))
	}
	if c.NoticeLinger < 0 {
		errs = append(errs, fmt.Errorf("--notice-linger must not be negative, not %v", c.NoticeLinger))
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	if c.BackgroundOrders < 0 {
		errs = append(errs, errors.New("--background-orders must not be negative"))
	}
	if c.Addr != "" && c.MetricsAddr == "" && c.Workload == Payments {
		errs = append(errs, errors.New("the payments workload with --addr needs --metrics-addr (it counts final orders there)"))
	}
	if c.Addr != "" && c.PaymentLayer {
		errs = append(errs, errors.New("--payment-layer is for the embedded ledger (ledgerd runs its own)"))
	}
	return errs
}

// partyAccounts is where a run's payment accounts are: users from users, merchants from
// merchants, coupon accounts from coupons (ids consecutive).
type partyAccounts struct {
	users, merchants, coupons    uint64
	nUsers, nMerchants, nCoupons int
}

func newPartyAccounts(base uint64, users int) partyAccounts {
	p := partyAccounts{users: base, nUsers: users, nMerchants: max(2, int(float64(users)*merchantsPerUser)),
		nCoupons: couponAccounts}
	p.merchants = p.users + uint64(p.nUsers)
	p.coupons = p.merchants + uint64(p.nMerchants)
	return p
}

// open opens the accounts: users and merchants may not go below zero; coupon accounts may
// (they are the platform's promotion budget handed to a party account).
func (p partyAccounts) open(ctx context.Context, c *Config, t target) error {
	var as []*ledgerv1.Account
	add := func(first uint64, n int, code uint32, flags *ledgerv1.AccountFlags) {
		for i := range n {
			as = append(as, &ledgerv1.Account{Id: first + uint64(i), Ledger: c.ledgerID(), Code: code, Flags: flags})
		}
	}
	guarded := &ledgerv1.AccountFlags{DebitsMustNotExceedCredits: true}
	add(p.users, p.nUsers, 2001, guarded)
	add(p.merchants, p.nMerchants, 2002, guarded)
	add(p.coupons, p.nCoupons, 2004, nil)
	for first := 0; first < len(as); first += ledger.BatchEventsMax {
		failed, err := t.createAccounts(ctx, as[first:min(first+ledger.BatchEventsMax, len(as))])
		if err != nil {
			return fmt.Errorf("bench: open payment accounts: %w", err)
		}
		if failed > 0 {
			return fmt.Errorf("bench: %d payment accounts refused (ids from %d taken?)", failed, p.users)
		}
	}
	return nil
}

// payRunner is one payments run: its counters are shared by its workers.
type payRunner struct {
	cfg      *Config
	pay      *payLayer
	parties  partyAccounts
	mix      []float64
	issued   atomic.Int64 // orders handed to workers
	answered atomic.Int64 // orders answered (accepted or not)
	accepted atomic.Int64 // answered OK (a new order) or EXISTS
	requests atomic.Int64
	errs     atomic.Int64
	firstErr atomic.Value
	start    time.Time // when the measured orders' issuing began (open loop: the schedule's zero)

	mu       sync.Mutex
	refused  map[string]int64 // by result
	byForm   map[string]int64 // accepted, by form
	pays     []paid           // payments accepted, oldest first: what refunds are made of
	refundSb int64            // refunds made as payments for want of an old enough payment
}

type paid struct {
	id, amount uint64
	at         time.Time
}

// payWorker is one caller.
type payWorker struct {
	r      *payRunner
	rng    *rand.Rand
	prefix string
	call   *hdrhistogram.Histogram
	order  *hdrhistogram.Histogram
	late   *hdrhistogram.Histogram // open loop: how late each call was sent after it fell due
	buf    []*ledgerv1.PaymentRequest
}

// runPayments runs the payments workload on a started target and payment layer.
func runPayments(ctx context.Context, c *Config, tgt target, pay *payLayer) (*Result, error) {
	mix, err := parseMix(c.Mix)
	if err != nil {
		return nil, err
	}
	r := &payRunner{cfg: c, pay: pay, parties: newPartyAccounts(c.IDBase, c.Accounts), mix: mix,
		refused: map[string]int64{}, byForm: map[string]int64{}}
	if err := r.parties.open(ctx, c, tgt); err != nil {
		return nil, err
	}
	if c.ChannelDown != "" {
		return nil, errors.New("bench: the payments workload needs its channel; --channel-down goes with --workload transfers")
	}
	// Funding: one recharge per user, answered and final before the measured orders.
	base, err := pay.counts()
	if err != nil {
		return nil, err
	}
	fundStart := time.Now()
	if err := r.fund(ctx, base.final()); err != nil {
		return nil, err
	}
	fundDone, err := r.waitFinal(ctx, base.final()+int64(r.parties.nUsers))
	if err != nil {
		return nil, fmt.Errorf("bench: funding: %w", err)
	}
	fundSeconds := time.Since(fundStart).Seconds()
	if fundDone.failed > base.failed {
		return nil, fmt.Errorf("bench: funding: %.0f recharges failed %v", fundDone.failed-base.failed,
			diff(fundDone.failedBy, base.failedBy))
	}

	m := startMeter(c.MetricsAddr)
	workers := make([]*payWorker, c.Concurrency)
	for i := range workers {
		workers[i] = &payWorker{r: r, rng: rand.New(rand.NewPCG(c.Seed, uint64(i)+1)),
			prefix: fmt.Sprintf("lb%x-%d-", c.IDBase, i), call: newHistogram(), order: newHistogram(), late: newHistogram()}
	}
	// The counter of final orders, sampled: completions over time.
	type sample struct {
		at    time.Time
		final int64
	}
	var samples []sample
	stopCount, countDone := make(chan struct{}), make(chan struct{})
	var countErr error
	start := time.Now()
	go func() {
		defer close(countDone)
		tick := time.NewTicker(samplePeriod)
		defer tick.Stop()
		for {
			select {
			case <-stopCount:
				return
			case now := <-tick.C:
				oc, err := pay.counts()
				if err != nil {
					countErr = err
					return
				}
				samples = append(samples, sample{now, oc.final() - fundDone.final()})
				if c.Progress != nil {
					fmt.Fprintf(c.Progress, "\rorders: %d answered, %d final  ", r.answered.Load(), oc.final()-fundDone.final())
				}
			}
		}
	}()
	r.start = start
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w.loop(ctx) })
	}
	wg.Wait()
	issueEnd := time.Now()
	atIssueEnd, err := pay.counts()
	if err != nil {
		return nil, err
	}
	// ledger_payment_orders_total counts each order once, when it is final and durable.
	last, err := r.waitFinal(ctx, fundDone.final()+r.accepted.Load())
	drained := time.Now()
	close(stopCount)
	<-countDone
	if c.Progress != nil {
		fmt.Fprintln(c.Progress)
	}
	if err == nil {
		err = countErr
	}
	m.stop()
	if fe, ok := r.firstErr.Load().(error); ok && r.accepted.Load() == 0 {
		return nil, fmt.Errorf("bench: every request failed: %w", fe)
	}

	call, order, late := newHistogram(), newHistogram(), newHistogram()
	for _, w := range workers {
		call.Merge(w.call)
		order.Merge(w.order)
		late.Merge(w.late)
	}
	issue := issueEnd.Sub(start)
	res := &Result{Workload: Payments, Accounts: c.Accounts, Orders: c.Orders, Mix: c.Mix, Batch: c.Batch, Rate: c.Rate,
		Concurrency: c.Concurrency, Seed: c.Seed, Shadow: c.Shadow, Channel: c.Channel,
		DurationSeconds: issue.Seconds(), Requests: r.requests.Load(), RequestErrors: r.errs.Load(),
		LateP50Ms: ms(late.ValueAtQuantile(50)), LateP99Ms: ms(late.ValueAtQuantile(99)), LateMaxMs: ms(late.Max()),
		LatencyP50Ms: ms(call.ValueAtQuantile(50)), LatencyP90Ms: ms(call.ValueAtQuantile(90)),
		LatencyP99Ms: ms(call.ValueAtQuantile(99)), LatencyP999Ms: ms(call.ValueAtQuantile(99.9)),
		LatencyMaxMs: ms(call.Max()), TransferLatencyP50Ms: ms(order.ValueAtQuantile(50)),
		TransferLatencyP99Ms: ms(order.ValueAtQuantile(99)), LatencyBuckets: buckets(call),
		FundUsers: r.parties.nUsers, FundSeconds: fundSeconds,
		OrdersAccepted: r.accepted.Load(), OrdersAcceptedByForm: r.byForm, OrdersRefusedByResult: r.refused,
		RefundsAsPayments: r.refundSb,
		OrdersCompleted:   last.final() - fundDone.final(),
		OrdersSucceeded:   int64(last.succeeded - fundDone.succeeded),
		OrdersFailed:      int64(last.failed - fundDone.failed), OrdersFailedByResult: diff(last.failedBy, fundDone.failedBy),
		OrdersInFlight:          int64(last.inFlight),
		OrdersCompletedInWindow: max(0, atIssueEnd.final()-fundDone.final()), DrainSeconds: drained.Sub(issueEnd).Seconds()}
	if c.Addr == "" {
		res.ChannelLatencyMs = float64(c.ChannelLatency) / 1e6
	}
	for _, n := range r.refused {
		res.OrdersRefused += n
	}
	res.BalanceCheck = res.orderCheck(err)
	res.OrdersAcceptedPerSecond = float64(res.OrdersAccepted) / issue.Seconds()
	res.OrdersCompletedPerSecond = float64(res.OrdersCompleted) / drained.Sub(start).Seconds()
	res.OrdersCompletedInWindowPerSecond = float64(res.OrdersCompletedInWindow) / issue.Seconds()
	res.TransfersPerSecond = res.OrdersCompletedPerSecond // the run's figure for --repeat's median
	prev := sample{start, 0}
	for _, s := range samples {
		res.ThroughputSeries = append(res.ThroughputSeries, float64(s.final-prev.final)/s.at.Sub(prev.at).Seconds())
		prev = s
	}
	m.fill(res, c.Addr == "", res.OrdersCompleted, &res.AllocsPerOrder, &res.BytesPerOrder)
	if fe, ok := r.firstErr.Load().(error); ok {
		res.FirstError = fe.Error()
	}
	return res, nil
}

// orderCheck: every order answered is accepted or refused, every accepted one final, and
// none left in flight.
func (res *Result) orderCheck(drainErr error) string {
	switch {
	case drainErr != nil:
		return fmt.Sprintf("FAILED: %d orders accepted, %d final, %d in flight: %v", res.OrdersAccepted,
			res.OrdersCompleted, res.OrdersInFlight, drainErr)
	case res.OrdersAccepted+res.OrdersRefused != int64(res.Orders):
		return fmt.Sprintf("FAILED: %d orders, but %d accepted + %d refused (or in failed requests)", res.Orders,
			res.OrdersAccepted, res.OrdersRefused)
	case res.OrdersCompleted < res.OrdersAccepted || res.OrdersInFlight != 0:
		return fmt.Sprintf("FAILED: %d orders accepted, %d final, %d in flight", res.OrdersAccepted,
			res.OrdersCompleted, res.OrdersInFlight)
	case res.OrdersCompleted > res.OrdersAccepted:
		return fmt.Sprintf("FAILED: %d orders accepted, but ledger_payment_orders_total counted %d final",
			res.OrdersAccepted, res.OrdersCompleted)
	}
	return fmt.Sprintf("ok: %d orders accepted = %d final (%d succeeded, %d failed), none in flight",
		res.OrdersAccepted, res.OrdersCompleted, res.OrdersSucceeded, res.OrdersFailed)
}

// waitFinal waits until the counter of final orders reaches want and no order is in flight
// (for at most the drain timeout); it answers the last reading.
func (r *payRunner) waitFinal(ctx context.Context, want int64) (orderCounts, error) {
	deadline := time.Now().Add(r.cfg.DrainTimeout)
	for {
		oc, err := r.pay.counts()
		if err != nil {
			return oc, err
		}
		if oc.final() >= want && oc.inFlight == 0 {
			return oc, nil
		}
		if time.Now().After(deadline) {
			return oc, fmt.Errorf("%d of %d orders final after %v", oc.final(), want, r.cfg.DrainTimeout)
		}
		if ctx.Err() != nil {
			return oc, ctx.Err()
		}
		time.Sleep(drainPoll)
	}
}

// fund recharges every user with FundAmount, concurrently, batch by batch.
func (r *payRunner) fund(ctx context.Context, finalBefore int64) error {
	c := r.cfg
	var next atomic.Int64
	var wg sync.WaitGroup
	// Paced: at most fundInFlightMax recharges sent and not final, so that none is refused by
	// the gateway's queues. A caller reserves its batch before it sends: callers that only
	// read the orders in flight would all see room at once, and overshoot by their batches
	// (128 callers of 25 had 570 recharges refused channel_unavailable).
	var mu sync.Mutex
	var sent int64
	reserve := func(n int64) error {
		for {
			oc, err := r.pay.counts() // final only grows: a stale count errs on the safe side
			if err != nil {
				return err
			}
			mu.Lock()
			if sent+n-(oc.final()-finalBefore) <= fundInFlightMax {
				sent += n
				mu.Unlock()
				return nil
			}
			mu.Unlock()
			select {
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	errs := make([]error, c.Concurrency)
	for i := range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				first := next.Add(int64(c.Batch)) - int64(c.Batch)
				if first >= int64(r.parties.nUsers) {
					return
				}
				last := min(first+int64(c.Batch), int64(r.parties.nUsers))
				if err := reserve(last - first); err != nil {
					errs[i] = err
					return
				}
				var rs []*ledgerv1.PaymentRequest
				for u := first; u < last; u++ {
					key := fmt.Sprintf("lb%x-fund-%d", c.IDBase, u)
					rs = append(rs, &ledgerv1.PaymentRequest{IdempotencyKey: key, BizId: key,
						Form: ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE, Ledger: c.ledgerID(), Amount: FundAmount,
						ToAccountId: r.parties.users + uint64(u), Channel: c.Channel, ChannelAccount: "card-" + key})
				}
				results, err := r.pay.caller.createPayments(ctx, rs)
				if err == nil {
					for _, res := range results {
						if res.GetResult() != ledgerv1.PaymentResult_PAYMENT_RESULT_OK {
							err = fmt.Errorf("a funding recharge was answered %v", res.GetResult())
							break
						}
					}
				}
				if err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}

func (w *payWorker) user() uint64 {
	p := &w.r.parties
	return p.users + w.rng.Uint64N(uint64(p.nUsers))
}

// request makes order n of the mix.
func (w *payWorker) request(n int64) *ledgerv1.PaymentRequest {
	c, p := w.r.cfg, &w.r.parties
	key := w.prefix + strconv.FormatInt(n, 10)
	rq := &ledgerv1.PaymentRequest{IdempotencyKey: key, BizId: key, Ledger: c.ledgerID(), Amount: w.rng.Uint64N(990) + 10}
	x := w.rng.Float64()
	form := 0
	for form < len(w.r.mix)-1 && x >= w.r.mix[form] {
		form++
	}
	switch mixForms[form] {
	case "refund":
		if o, ok := w.r.oldPayment(); ok {
			rq.Form, rq.Amount, rq.OriginalOrderId, rq.Ledger = ledgerv1.PaymentForm_PAYMENT_FORM_REFUND, o.amount, o.id, 0
			return rq
		}
		w.r.mu.Lock()
		w.r.refundSb++
		w.r.mu.Unlock()
		fallthrough
	case "pay":
		rq.Form, rq.FromAccountId = ledgerv1.PaymentForm_PAYMENT_FORM_PAY, w.user()
		rq.ToAccountId = p.merchants + w.rng.Uint64N(uint64(p.nMerchants))
		card := &ledgerv1.Instrument{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD, Amount: rq.Amount}
		balance := &ledgerv1.Instrument{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_BALANCE, Amount: rq.Amount}
		switch w.rng.IntN(3) {
		case 0: // card only
			rq.Channel, rq.Instruments = c.Channel, []*ledgerv1.Instrument{card}
		case 1: // balance only
			rq.Instruments = []*ledgerv1.Instrument{balance}
		default: // coupon + balance + card
			coupon := &ledgerv1.Instrument{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_COUPON, Amount: rq.Amount / 10,
				AccountId: p.coupons + w.rng.Uint64N(uint64(p.nCoupons))}
			balance.Amount = rq.Amount * 4 / 10
			card.Amount = rq.Amount - coupon.Amount - balance.Amount
			rq.Channel, rq.Instruments = c.Channel, []*ledgerv1.Instrument{coupon, balance, card}
		}
	case "recharge":
		rq.Form, rq.ToAccountId, rq.Channel = ledgerv1.PaymentForm_PAYMENT_FORM_RECHARGE, w.user(), c.Channel
		rq.ChannelAccount = "card-" + strconv.FormatUint(rq.ToAccountId, 10)
	case "withdraw":
		rq.Form, rq.FromAccountId, rq.Channel = ledgerv1.PaymentForm_PAYMENT_FORM_WITHDRAW, w.user(), c.Channel
		rq.ChannelAccount = "bank-" + strconv.FormatUint(rq.FromAccountId, 10)
	default: // transfer
		rq.Form, rq.FromAccountId = ledgerv1.PaymentForm_PAYMENT_FORM_TRANSFER, w.user()
		rq.ToAccountId = p.users + (rq.FromAccountId-p.users+1+w.rng.Uint64N(uint64(p.nUsers-1)))%uint64(p.nUsers)
	}
	return rq
}

// oldPayment takes the oldest payment accepted at least RefundAfter ago, to refund it whole.
func (r *payRunner) oldPayment() (paid, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	after := r.cfg.RefundAfter
	if after <= 0 {
		after = RefundAfter
	}
	if len(r.pays) == 0 || time.Since(r.pays[0].at) < after {
		return paid{}, false
	}
	o := r.pays[0]
	r.pays = r.pays[1:]
	return o, true
}

func (w *payWorker) loop(ctx context.Context) {
	c := w.r.cfg
	for ctx.Err() == nil {
		n := int64(c.Batch)
		first := w.r.issued.Add(n) - n
		if first >= int64(c.Orders) {
			return
		}
		n = min(n, int64(c.Orders)-first)
		w.buf = w.buf[:0]
		for i := range n {
			w.buf = append(w.buf, w.request(first+i))
		}
		due := time.Time{}
		if c.Rate > 0 {
			// Open loop: the call falls due when the schedule reaches its first order.
			due = w.r.start.Add(time.Duration(float64(first) / c.Rate * float64(time.Second)))
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		}
		w.send(ctx, w.buf, due)
	}
}

// send makes one CreatePayments call and records it; its latency counts from due when set
// (open loop), else from now.
func (w *payWorker) send(ctx context.Context, rs []*ledgerv1.PaymentRequest, due time.Time) {
	r := w.r
	start := time.Now()
	if due.IsZero() {
		due = start
	} else {
		_ = w.late.RecordValue(max(start.Sub(due).Microseconds(), latencyMinMicros))
	}
	results, err := r.pay.caller.createPayments(ctx, rs)
	micros := time.Since(due).Microseconds()
	r.requests.Add(1)
	r.answered.Add(int64(len(rs)))
	if err == nil && len(results) != len(rs) {
		err = fmt.Errorf("%d results for %d requests", len(results), len(rs))
	}
	if err != nil {
		r.errs.Add(1)
		r.firstErr.CompareAndSwap(nil, err)
		r.mu.Lock()
		r.refused["request_error"] += int64(len(rs))
		r.mu.Unlock()
		return
	}
	_ = w.call.RecordValue(max(micros, latencyMinMicros))
	_ = w.order.RecordValues(max(micros, latencyMinMicros), int64(len(rs)))
	accepted := int64(0)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, res := range results {
		switch res.GetResult() {
		case ledgerv1.PaymentResult_PAYMENT_RESULT_OK, ledgerv1.PaymentResult_PAYMENT_RESULT_EXISTS:
			accepted++
			r.byForm[formName(rs[i].GetForm())]++
			if rs[i].GetForm() == ledgerv1.PaymentForm_PAYMENT_FORM_PAY {
				r.pays = append(r.pays, paid{id: res.GetOrder().GetId(), amount: rs[i].GetAmount(), at: start})
			}
		default:
			r.refused[strings.ToLower(strings.TrimPrefix(res.GetResult().String(), "PAYMENT_RESULT_"))]++
		}
	}
	r.accepted.Add(accepted)
}

func formName(f ledgerv1.PaymentForm) string {
	return strings.ToLower(strings.TrimPrefix(f.String(), "PAYMENT_FORM_"))
}

// background sends rate card payments a second (in batches every countPeriod) from
// backgroundUsers payers until stop; it answers how many were accepted and refused.
func background(ctx context.Context, c *Config, pay *payLayer, parties partyAccounts, rate float64,
	stop <-chan struct{}) (accepted, refused int64, err error) {
	per := max(1, int(rate*countPeriod.Seconds()))
	tick := time.NewTicker(countPeriod)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-stop:
			return accepted, refused, nil
		case <-ctx.Done():
			return accepted, refused, ctx.Err()
		case <-tick.C:
		}
		rs := make([]*ledgerv1.PaymentRequest, 0, per)
		for range per {
			key := fmt.Sprintf("lb%x-bg-%d", c.IDBase, n)
			amount := uint64(n%990 + 10)
			rs = append(rs, &ledgerv1.PaymentRequest{IdempotencyKey: key, BizId: key, Form: ledgerv1.PaymentForm_PAYMENT_FORM_PAY,
				Ledger: c.ledgerID(), Amount: amount, FromAccountId: parties.users + uint64(n%parties.nUsers),
				ToAccountId: parties.merchants + uint64(n%parties.nMerchants), Channel: c.Channel,
				Instruments: []*ledgerv1.Instrument{{Kind: ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD, Amount: amount}}})
			n++
		}
		for first := 0; first < len(rs); first += api.PaymentRequestsMax {
			results, err := pay.caller.createPayments(ctx, rs[first:min(first+api.PaymentRequestsMax, len(rs))])
			if err != nil {
				return accepted, refused, err
			}
			for _, res := range results {
				if res.GetResult() == ledgerv1.PaymentResult_PAYMENT_RESULT_OK {
					accepted++
				} else {
					refused++
				}
			}
		}
	}
}

// writePaymentsText prints a payments run's summary.
func (res *Result) writePaymentsText(w io.Writer) {
	fmt.Fprintf(w, "mode            %s", res.Mode)
	if res.Shards > 0 {
		fmt.Fprintf(w, ", shards: %d", res.Shards)
	}
	fmt.Fprintf(w, "\nworkload        payments: %d orders (%s), %d users, batch %d, concurrency %d, channel %s",
		res.Orders, res.Mix, res.Accounts, res.Batch, res.Concurrency, res.Channel)
	if res.Rate > 0 {
		fmt.Fprintf(w, ", offered open loop at %.0f orders/s (latency from when each call fell due)", res.Rate)
	}
	if res.ChannelLatencyMs > 0 {
		fmt.Fprintf(w, " (simulated, latency %gms)", res.ChannelLatencyMs)
	}
	if res.Shadow {
		fmt.Fprint(w, ", shadow")
	}
	fmt.Fprintf(w, "\nfunding         %d recharges final in %.2fs (not in the figures below)\n", res.FundUsers, res.FundSeconds)
	fmt.Fprintf(w, "completed       %.0f orders/s end to end (%d final: %d succeeded, %d failed) in %.2fs + %.2fs to drain; %.0f/s within the issuing window\n",
		res.OrdersCompletedPerSecond, res.OrdersCompleted, res.OrdersSucceeded, res.OrdersFailed, res.DurationSeconds,
		res.DrainSeconds, res.OrdersCompletedInWindowPerSecond)
	if res.OrdersFailed > 0 {
		fmt.Fprintf(w, "                failed %s\n", counts(res.OrdersFailedByResult))
	}
	fmt.Fprintf(w, "accepted        %.0f orders/s (%d accepted %s, %d refused %s, %d requests, %d request errors)\n",
		res.OrdersAcceptedPerSecond, res.OrdersAccepted, counts(res.OrdersAcceptedByForm), res.OrdersRefused,
		counts(res.OrdersRefusedByResult), res.Requests, res.RequestErrors)
	if res.RefundsAsPayments > 0 {
		fmt.Fprintf(w, "                %d refunds made as payments (no payment %v old yet)\n", res.RefundsAsPayments, RefundAfter)
	}
	how := "CreatePayments round trip"
	if res.Rate > 0 {
		how = "CreatePayments, from when each call fell due"
	}
	fmt.Fprintf(w, "voucher latency p50 %.2fms  p90 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms (%s)\n",
		res.LatencyP50Ms, res.LatencyP90Ms, res.LatencyP99Ms, res.LatencyP999Ms, res.LatencyMaxMs, how)
	if res.Rate > 0 {
		fmt.Fprintf(w, "sent late       p50 %.2fms  p99 %.2fms  max %.2fms after falling due (waiting for a free caller: raise --concurrency if large)\n",
			res.LateP50Ms, res.LateP99Ms, res.LateMaxMs)
	}
	fmt.Fprintf(w, "per order       p50 %.2fms  p99 %.2fms\n", res.TransferLatencyP50Ms, res.TransferLatencyP99Ms)
	fmt.Fprintf(w, "this process    %.2f CPU s (%.0f%% of %.2fs), peak RSS %.1f MiB", res.CPUSeconds,
		100*res.CPUSeconds/(res.DurationSeconds+res.DrainSeconds), res.DurationSeconds+res.DrainSeconds,
		float64(res.PeakRSSBytes)/(1<<20))
	if res.AllocsPerOrder > 0 {
		fmt.Fprintf(w, ", %.0f allocs and %.0f bytes per order", res.AllocsPerOrder, res.BytesPerOrder)
	}
	fmt.Fprintln(w)
	if res.WALBytesPerTransfer > 0 {
		fmt.Fprintf(w, "storage         %d write stalls (%.2fs), %.0f WAL bytes per order, write amplification %.1f\n",
			res.WriteStalls, res.WriteStallSeconds, res.WALBytesPerTransfer, res.WriteAmplification)
	}
	if res.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "ledgerd         %.2f CPU s, RSS %.1f MiB\n", res.ServerCPUSeconds, float64(res.ServerRSSBytes)/(1<<20))
	}
	if res.FirstError != "" {
		fmt.Fprintf(w, "first error     %s\n", res.FirstError)
	}
	fmt.Fprintf(w, "order check     %s\n", res.BalanceCheck)
}

func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "(none)"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
