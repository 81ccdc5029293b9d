package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/schollz/progressbar/v3"

	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Latencies are recorded in microseconds from 1 µs to 10 minutes with 3 significant digits.
const (
	latencyMinMicros = 1
	latencyMaxMicros = 10 * 60 * 1_000_000
	latencyDigits    = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(latencyMinMicros, latencyMaxMicros, latencyDigits)
}

// The workers' latencies go into latencyShards pairs of histograms (worker i into shard i mod
// latencyShards), each worker adding latencyBufferMax at a time under the shard's lock: a pair
// of histograms per worker was 2,048 histograms of 250 KB at 1,024 workers, and recording into
// them, a cache miss each, took a fifth of the load generator's CPU on the cores it shares
// with the ledger it measures.
const (
	latencyShards    = 8
	latencyBufferMax = 256
)

// latencyShard is a pair of histograms some workers share: one entry per request, and one
// per transfer (a request's latency counted for each of its transfers).
type latencyShard struct {
	mu                sync.Mutex
	request, transfer *hdrhistogram.Histogram
}

// latency is one request's latency and its transfers, waiting in a worker's buffer.
type latency struct{ micros, transfers int64 }

// record keeps one request's latency, adding the buffer to the worker's shard when it is full.
func (w *worker) latency(micros, transfers int64) {
	w.lat = append(w.lat, latency{micros: max(micros, latencyMinMicros), transfers: transfers})
	if len(w.lat) == latencyBufferMax {
		w.flushLatencies()
	}
}

// flushLatencies adds the worker's buffered latencies to its shard.
func (w *worker) flushLatencies() {
	s := w.shard
	s.mu.Lock()
	for _, l := range w.lat {
		_ = s.request.RecordValue(l.micros)
		_ = s.transfer.RecordValues(l.micros, l.transfers)
	}
	s.mu.Unlock()
	w.lat = w.lat[:0]
}

// Run runs one benchmark and returns its result. A run whose target fails to close (a
// follower of the event stream that did not keep up, with --subscribe) fails.
func Run(ctx context.Context, c Config) (_ *Result, err error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var tgt target
	var emb *embedded
	if c.Addr == "" {
		e, err := startEmbedded(&c)
		if err != nil {
			return nil, err
		}
		emb, tgt = e, e.target
	} else {
		r, err := dialRemote(&c)
		if err != nil {
			return nil, err
		}
		tgt = r
	}
	defer func() {
		var cerr error
		if emb != nil {
			cerr = emb.close()
		} else {
			cerr = tgt.close()
		}
		if err == nil && cerr != nil {
			err = fmt.Errorf("bench: closing the ledger: %w", cerr)
		}
	}()
	var pay *payLayer
	switch {
	case emb != nil:
		pay = emb.pay
	case c.paymentLayer():
		pay = &payLayer{metricsAddr: c.MetricsAddr}
		if err := pay.dialPayments(c.Addr, c.Security); err != nil {
			return nil, err
		}
		defer pay.close()
	}
	var before storage.Stats
	if emb != nil {
		before = emb.store.Stats()
	}
	var res *Result
	var r *runner
	if c.Workload == Payments {
		var err error
		if res, err = runPayments(ctx, &c, tgt, pay); err != nil {
			return nil, err
		}
	} else {
		if err := openAccounts(ctx, &c, tgt); err != nil {
			return nil, err
		}
		if emb != nil { // the storage figures are the transfers', not the accounts'
			before = emb.store.Stats()
		}
		r = &runner{cfg: &c, tgt: tgt}
		stopBackground, err := alongside(ctx, &c, tgt, pay)
		if err != nil {
			return nil, err
		}
		if res, err = r.run(ctx); err != nil {
			return nil, err
		}
		res.Workload = Transfers
		if err := stopBackground(res); err != nil {
			return nil, err
		}
	}
	if emb != nil {
		res.storage(before, emb.store.Stats())
	}
	res.Mode = "embedded, gRPC on loopback"
	switch {
	case c.Addr != "":
		res.Mode = "remote ledgerd at " + c.Addr
	case c.InProcess:
		res.Mode = "embedded, in process"
	}
	if emb != nil {
		res.Shards = c.Shards
		res.Mode += fmt.Sprintf(", GOMAXPROCS %d, background nice %d", runtime.GOMAXPROCS(0), c.BackgroundNice)
	}
	if r != nil {
		res.BalanceCheck = r.checkBalances(ctx)
	}
	return res, nil
}

// alongside prepares the payment layer for the transfers workload: it takes the channel down
// (--channel-down) and starts the background card payments (--background-orders). The
// function it returns stops them and records them in the result.
func alongside(ctx context.Context, c *Config, tgt target, pay *payLayer) (func(*Result) error, error) {
	if pay == nil {
		return func(*Result) error { return nil }, nil
	}
	switch c.ChannelDown {
	case ChannelDegraded:
		if err := pay.caller.setDegraded(ctx, c.Channel, true); err != nil {
			return nil, fmt.Errorf("bench: degrade channel %s: %w", c.Channel, err)
		}
	case ChannelDead:
		if err := pay.killChannel(); err != nil {
			return nil, err
		}
	}
	restore := func() error {
		if c.ChannelDown == ChannelDegraded { // ledgerd's channel stays as it was found
			return pay.caller.setDegraded(context.Background(), c.Channel, false)
		}
		return nil
	}
	stop := make(chan struct{})
	type outcome struct {
		accepted, refused int64
		err               error
	}
	done := make(chan outcome, 1)
	if c.BackgroundOrders > 0 {
		parties := newPartyAccounts(c.IDBase+uint64(c.Accounts), backgroundUsers)
		if err := parties.open(ctx, c, tgt); err != nil {
			return nil, err
		}
		go func() {
			a, r, err := background(ctx, c, pay, parties, c.BackgroundOrders, stop)
			done <- outcome{a, r, err}
		}()
	} else {
		done <- outcome{}
	}
	return func(res *Result) error {
		close(stop)
		o := <-done
		res.PaymentLayer, res.ChannelDown, res.Channel = true, c.ChannelDown, c.Channel
		res.BackgroundRate, res.BackgroundAccepted, res.BackgroundRefused = c.BackgroundOrders, o.accepted, o.refused
		return errors.Join(o.err, restore())
	}, nil
}

func openAccounts(ctx context.Context, c *Config, t target) error {
	batch := make([]*ledgerv1.Account, 0, ledger.BatchEventsMax)
	for i := 0; i < c.Accounts; i++ {
		a := &ledgerv1.Account{Id: c.IDBase + uint64(i), Ledger: c.ledgerID(), Code: 1}
		if c.Distribution == Hot && c.HotFlagged && i >= c.Accounts-c.HotAccounts {
			a.Flags = &ledgerv1.AccountFlags{Hot: true, Internal: true}
		}
		batch = append(batch, a)
		if len(batch) == cap(batch) || i == c.Accounts-1 {
			failed, err := t.createAccounts(ctx, batch)
			if err != nil {
				return fmt.Errorf("bench: open accounts: %w", err)
			}
			if failed > 0 {
				return fmt.Errorf("bench: %d accounts refused (ids from %d taken?)", failed, c.IDBase)
			}
			batch = batch[:0]
		}
	}
	return nil
}

type runner struct {
	cfg      *Config
	tgt      target
	pool     *streamPool  // --streams: the target's transfer streams
	ahead    aheadTarget  // --prepare-ahead, where it applies: each worker's next request encoded meanwhile
	issued   atomic.Int64 // transfers handed to workers
	done     atomic.Int64 // transfers answered
	failed   atomic.Int64
	amount   atomic.Uint64 // sum of the amounts of transfers posted
	requests atomic.Int64
	errs     atomic.Int64
	firstErr atomic.Value
	start    time.Time
	// tenthsMu orders the answers' counting with their tenths: when the answered count
	// reached each tenth of the run, the transfers answered and failed by then (set once).
	tenthsMu sync.Mutex
	tenths   [10]tenthMark
}

type tenthMark struct {
	at             time.Duration // after start (0: not reached)
	answered, fail int64
}

// answered counts n transfers answered (their failures already counted), and notes when the
// count reaches each tenth of the run's transfers, with the counts then. Once a request: the
// lock keeps the marks in the order of the counts.
func (r *runner) answered(n int64) {
	r.tenthsMu.Lock()
	defer r.tenthsMu.Unlock()
	now := r.done.Add(n)
	total := int64(r.cfg.Transfers)
	m := tenthMark{answered: now}
	for k := range int64(10) {
		if b := ((k+1)*total + 9) / 10; now-n < b && b <= now {
			if m.at == 0 {
				m.at, m.fail = max(time.Since(r.start), 1), r.failed.Load()
			}
			r.tenths[k] = m
		}
	}
}

// tenthRates are the transfers per second that succeeded in each tenth of the run (between
// the answers that reached its bounds: what those answers held, counted), nil when a tenth
// was not reached (the run cut short, or two-phase holds that failed, whose posts were never
// sent) or one answer reached two tenths (a run too short to divide).
func (r *runner) tenthRates() []float64 {
	r.tenthsMu.Lock()
	defer r.tenthsMu.Unlock()
	rates := make([]float64, 0, 10)
	var last tenthMark
	for _, m := range r.tenths {
		if m.at <= last.at {
			return nil
		}
		ok := (m.answered - m.fail) - (last.answered - last.fail)
		rates = append(rates, float64(ok)/(m.at-last.at).Seconds())
		last = m
	}
	return rates
}

// worker is one client loop: it takes batches until the run's transfers are all issued.
type worker struct {
	r     *runner
	rng   *rand.Rand
	zipf  *rand.Zipf
	shard *latencyShard // where its latencies go
	lat   []latency     // latencies not yet in shard
	// The worker's messages, used again for every request: a worker waits for a request's
	// reply before it builds the next one, or (--prepare-ahead) its maker encodes each request
	// into bytes of its own before it builds the next, so the load generator allocates no
	// message per transfer and disturbs less the ledger it measures (both share the process).
	msgs         []ledgerv1.Transfer
	used         int
	batch, posts []*ledgerv1.Transfer // a request's messages; posts: a two-phase run's posts
	pendingFlags ledgerv1.TransferFlags
	postFlags    ledgerv1.TransferFlags
	idx          int                                   // the worker's index (its tag on a stream)
	streamReq    ledgerv1.CreateTransfersStreamRequest // used again, as msgs
}

// message hands out the next of the worker's messages (reset releases them all).
func (w *worker) message() *ledgerv1.Transfer {
	t := &w.msgs[w.used]
	w.used++
	return t
}

// setTransfer sets every field a load-test transfer uses (the message is used again).
func setTransfer(t *ledgerv1.Transfer, id, debit, credit, amount, pendingID uint64, ledgerID uint32,
	flags *ledgerv1.TransferFlags) {
	t.Id, t.DebitAccountId, t.CreditAccountId, t.Amount, t.PendingId = id, debit, credit, amount, pendingID
	t.Ledger, t.Code, t.Flags = ledgerID, 1, flags
}

// workers makes the run's callers (Concurrency of them) and the shards their latencies go to.
func (r *runner) workers() ([]*latencyShard, []*worker) {
	c := r.cfg
	shards := make([]*latencyShard, min(latencyShards, c.Concurrency))
	for i := range shards {
		shards[i] = &latencyShard{request: newHistogram(), transfer: newHistogram()}
	}
	workers := make([]*worker, c.Concurrency)
	for i := range workers {
		rng := rand.New(rand.NewPCG(c.Seed, uint64(i)))
		w := &worker{r: r, rng: rng, shard: shards[i%len(shards)], lat: make([]latency, 0, latencyBufferMax),
			msgs: make([]ledgerv1.Transfer, 2*c.Batch), batch: make([]*ledgerv1.Transfer, 0, c.Batch),
			posts: make([]*ledgerv1.Transfer, 0, c.Batch), idx: i}
		w.pendingFlags.Pending, w.postFlags.PostPending = true, true
		if c.Distribution == Zipf {
			w.zipf = rand.NewZipf(rng, 1.1, 1, uint64(c.Accounts-1))
		}
		workers[i] = w
	}
	return shards, workers
}

func (r *runner) run(ctx context.Context) (*Result, error) {
	c := r.cfg
	m := startMeter(c.MetricsAddr)

	if g, ok := r.tgt.(interface{ transferStreams() *streamPool }); ok {
		r.pool = g.transferStreams() // nil without --streams
	}
	if a, ok := r.tgt.(aheadTarget); ok && c.PrepareAhead && !c.Pending && !c.ClientBatching && r.pool == nil {
		r.ahead = a
	}
	shards, workers := r.workers()
	series := []float64{}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	r.start = time.Now()
	go r.progress(stopProgress, progressDone, &series)
	if r.pool != nil && !c.Pending {
		r.pool.runCallers(ctx, r, workers)
	} else {
		var wg sync.WaitGroup
		for _, w := range workers {
			wg.Go(func() { w.loop(ctx) })
		}
		wg.Wait()
	}
	elapsed := time.Since(r.start)
	close(stopProgress)
	<-progressDone

	m.stop()
	if err, ok := r.firstErr.Load().(error); ok && r.done.Load() == 0 {
		return nil, fmt.Errorf("bench: every request failed: %w", err)
	}
	for _, w := range workers {
		w.flushLatencies()
	}
	request, transfer := newHistogram(), newHistogram()
	for _, s := range shards {
		request.Merge(s.request)
		transfer.Merge(s.transfer)
	}
	res := newResult(c, elapsed, r, request, transfer, series)
	m.fill(res, c.Addr == "", res.TransfersOK, &res.AllocsPerTransfer, &res.BytesPerTransfer)
	if err, ok := r.firstErr.Load().(error); ok {
		res.FirstError = err.Error()
	}
	return res, nil
}

// meter reads what a run costs: this process's CPU, peak RSS and allocations, and a remote
// ledgerd's CPU and RSS (through its metrics).
type meter struct {
	metricsAddr string
	ru0, ru1    syscall.Rusage
	mem0, mem1  runtime.MemStats
	remote      processSample
}

func startMeter(metricsAddr string) *meter {
	m := &meter{metricsAddr: metricsAddr}
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru0)
	runtime.ReadMemStats(&m.mem0)
	m.remote = scrapeProcess(metricsAddr)
	return m
}

// stop reads this process's figures at the end of the run.
func (m *meter) stop() {
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &m.ru1)
	runtime.ReadMemStats(&m.mem1)
}

// fill sets res's costs: allocations per unit of work when the ledger ran in this process
// (embedded), the remote ledgerd's CPU and RSS otherwise.
func (m *meter) fill(res *Result, embedded bool, units int64, allocs, bytes *float64) {
	res.CPUSeconds = cpuSeconds(&m.ru1) - cpuSeconds(&m.ru0)
	res.PeakRSSBytes = uint64(m.ru1.Maxrss) * 1024
	switch {
	case embedded:
		*allocs = float64(m.mem1.Mallocs-m.mem0.Mallocs) / float64(max(units, 1))
		*bytes = float64(m.mem1.TotalAlloc-m.mem0.TotalAlloc) / float64(max(units, 1))
	case m.remote.ok:
		end := scrapeProcess(m.metricsAddr)
		res.ServerCPUSeconds = end.cpuSeconds - m.remote.cpuSeconds
		res.ServerRSSBytes = end.rssBytes
		res.disk(m.remote.diskBytes, end.diskBytes, end.tables)
	}
}

func cpuSeconds(r *syscall.Rusage) float64 {
	return float64(r.Utime.Sec+r.Stime.Sec) + float64(r.Utime.Usec+r.Stime.Usec)/1e6
}

// progress samples the answered count once a period: the throughput-over-time series, and
// the live progress line.
func (r *runner) progress(stop, done chan struct{}, series *[]float64) {
	defer close(done)
	var bar *progressbar.ProgressBar
	if r.cfg.Progress != nil {
		bar = progressbar.NewOptions64(int64(r.cfg.Transfers), progressbar.OptionSetWriter(r.cfg.Progress),
			progressbar.OptionSetDescription("transfers"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("transfers"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(), progressbar.OptionOnCompletion(func() { fmt.Fprintln(r.cfg.Progress) }))
	}
	tick := time.NewTicker(r.cfg.ProgressPeriod)
	defer tick.Stop()
	last := int64(0)
	for {
		select {
		case <-tick.C:
			n := r.done.Load()
			*series = append(*series, float64(n-last)/r.cfg.ProgressPeriod.Seconds())
			if bar != nil {
				_ = bar.Set64(n)
			}
			last = n
		case <-stop:
			if bar != nil {
				_ = bar.Set64(r.done.Load())
				_ = bar.Finish()
			}
			return
		}
	}
}

func (w *worker) account() uint64 {
	return w.r.cfg.IDBase + w.rng.Uint64N(uint64(w.r.cfg.Accounts))
}

// credit picks the credit account for a transfer debiting debit.
func (w *worker) credit(debit uint64) uint64 {
	c := w.r.cfg
	var id uint64
	switch c.Distribution {
	case Zipf:
		id = c.IDBase + w.zipf.Uint64()
	case Hot:
		if w.rng.Float64()*100 < c.HotPercent {
			id = c.IDBase + uint64(c.Accounts-c.HotAccounts) + w.rng.Uint64N(uint64(c.HotAccounts))
		} else {
			id = w.account()
		}
	default:
		id = w.account()
	}
	if id == debit { // a transfer needs two accounts
		id = c.IDBase + (id-c.IDBase+1)%uint64(c.Accounts)
	}
	return id
}

func (w *worker) debit() uint64 {
	c := w.r.cfg
	if c.Distribution == Hot { // hot accounts take inflows; debits come from the others
		return c.IDBase + w.rng.Uint64N(uint64(c.Accounts-c.HotAccounts))
	}
	return w.account()
}

// take hands out the ids of the next n transfers to issue (fewer at the run's end): the first
// and how many, none once every transfer is issued.
func (r *runner) take(n int64) (first, got int64) {
	first = r.issued.Add(n) - n
	if first >= int64(r.cfg.Transfers) {
		return 0, 0
	}
	return first, min(n, int64(r.cfg.Transfers)-first)
}

func (w *worker) loop(ctx context.Context) {
	c := w.r.cfg
	if w.r.ahead != nil {
		w.loopAhead(ctx)
		return
	}
	for ctx.Err() == nil {
		w.used = 0
		n := int64(c.Batch)
		if c.Pending {
			n = int64(c.Batch+1) / 2 * 2 // a hold and its post
		}
		first, n := w.r.take(n)
		if n == 0 {
			return
		}
		if !c.Pending {
			if ts := w.transfers(first, int(n), w.batch[:0]); w.send(ctx, ts) {
				w.posted(ts)
			}
			continue
		}
		holds := w.transfers(first, int(n+1)/2, w.batch[:0])
		if !w.send(ctx, holds) {
			continue
		}
		posts := w.posts[:0]
		for i, h := range holds {
			if int64(len(holds)+i) >= n {
				break
			}
			t := w.message()
			setTransfer(t, h.GetId()+uint64(c.Transfers), h.GetDebitAccountId(), h.GetCreditAccountId(), 0,
				h.GetId(), h.GetLedger(), &w.postFlags)
			posts = append(posts, t)
		}
		if len(posts) > 0 && w.send(ctx, posts) {
			w.posted(holds[:len(posts)])
		}
	}
}

// aheadTarget is a target that sends requests encoded ahead (--prepare-ahead).
type aheadTarget interface {
	createEncoded(ctx context.Context, e *client.EncodedTransfers) (failed int, err error)
}

// made is a request made ahead: encoded, with the sum of its amounts for the balance check.
type made struct {
	e   *client.EncodedTransfers
	sum uint64
}

// loopAhead is loop with --prepare-ahead: a goroutine of the worker makes and encodes its
// next requests while the worker's request is in flight, in the worker's messages, which the
// encoding no longer needs once made: two at most beyond the one in flight (one in the
// channel's one place, one made and waiting to be put there).
func (w *worker) loopAhead(ctx context.Context) {
	next := make(chan made, 1)
	go func() {
		defer close(next)
		for ctx.Err() == nil {
			w.used = 0
			first, n := w.r.take(int64(w.r.cfg.Batch))
			if n == 0 {
				return
			}
			ts := w.transfers(first, int(n), w.batch[:0])
			m := made{e: client.EncodeTransfers(ts)}
			for _, t := range ts {
				m.sum += t.GetAmount()
			}
			select {
			case next <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for m := range next {
		if ctx.Err() != nil {
			continue // stopped: nothing more is sent (the maker ends)
		}
		n := m.e.Len()
		if w.record(n, func() (int, error) { return w.r.ahead.createEncoded(ctx, m.e) }) {
			w.r.amount.Add(m.sum)
		}
	}
}

// transfers makes n transfers with ids from the run's base plus first.
func (w *worker) transfers(first int64, n int, out []*ledgerv1.Transfer) []*ledgerv1.Transfer {
	c := w.r.cfg
	var flags *ledgerv1.TransferFlags
	if c.Pending {
		flags = &w.pendingFlags
	}
	for i := 0; i < n; i++ {
		d := w.debit()
		t := w.message()
		setTransfer(t, c.IDBase+uint64(first)+uint64(i), d, w.credit(d), w.rng.Uint64N(1000)+1, 0, c.ledgerID(), flags)
		out = append(out, t)
	}
	return out
}

// send makes one request and records it; it reports whether every transfer was created.
func (w *worker) send(ctx context.Context, ts []*ledgerv1.Transfer) bool {
	return w.record(len(ts), func() (failed int, err error) {
		if p := w.r.pool; p != nil {
			w.streamReq.Transfers = ts
			return p.create(ctx, w.idx, &w.streamReq)
		}
		if b, ok := w.r.tgt.(batcher); ok && w.r.cfg.ClientBatching {
			created, err := b.createTransfer(ctx, ts[0])
			if !created {
				failed = 1
			}
			return failed, err
		}
		return w.r.tgt.createTransfers(ctx, ts)
	})
}

// record times one request of n transfers (call) and counts its outcome; it reports whether
// every transfer was created.
func (w *worker) record(n int, call func() (failed int, err error)) bool {
	start := time.Now()
	failed, err := call()
	return w.recorded(n, time.Since(start).Microseconds(), failed, err)
}

// recorded counts a request of n transfers answered in micros, failed of them refused, or
// failed with err as a whole; it reports whether every transfer was created.
func (w *worker) recorded(n int, micros int64, failed int, err error) bool {
	w.r.requests.Add(1)
	if err != nil {
		w.r.errs.Add(1)
		w.r.firstErr.CompareAndSwap(nil, err)
		w.r.failed.Add(int64(n))
		w.r.answered(int64(n))
		return false
	}
	w.latency(micros, int64(n))
	w.r.failed.Add(int64(failed))
	w.r.answered(int64(n))
	return failed == 0
}

// posted counts the money of transfers that were posted, for the balance check.
func (w *worker) posted(ts []*ledgerv1.Transfer) {
	var sum uint64
	for _, t := range ts {
		sum += t.GetAmount()
	}
	w.r.amount.Add(sum)
}
