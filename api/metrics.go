package api

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/ledger/payment"
)

// Metrics are the ledger's Prometheus metrics. The actor layer counts in plain atomics and
// observers; this adapter exports them.
type Metrics struct {
	Registry        *prometheus.Registry
	transfers       *prometheus.CounterVec
	accounts        *prometheus.CounterVec
	transferCounter [256]prometheus.Counter
	accountCounter  [256]prometheus.Counter
	payments        *prometheus.CounterVec
	paymentCounter  [paymentForms][256]prometheus.Counter
	requestSeconds  *prometheus.HistogramVec
	authDenials     *prometheus.CounterVec
	panics          *prometheus.CounterVec
	streamRequests  *prometheus.CounterVec // CreateTransfersStream's requests, by code
	streams         prometheus.Gauge
	streamBatch     prometheus.Histogram
	// CommitSeconds, CommitPostings and HotFlushLegs go into actors.Config.
	CommitSeconds  prometheus.Histogram
	CommitPostings prometheus.Histogram
	HotFlushLegs   prometheus.Histogram
}

// NewMetrics makes the registry with the Go and process collectors and the ledger's own.
func NewMetrics() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.transfers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_transfers_total",
		Help: "Transfers answered, by result code (ok means created and durable)."}, []string{"result"})
	m.accounts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_accounts_total",
		Help: "Accounts answered, by result code (ok means created and durable)."}, []string{"result"})
	m.payments = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_payment_requests_total",
		Help: "Payment requests answered, by form and result code (ok means a new order accepted and durable; exists, the order of a repeated request)."},
		[]string{"form", "result"})
	m.requestSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ledger_grpc_request_duration_seconds", Help: "gRPC request latency, by method and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}, []string{"method", "code"})
	m.CommitSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_commit_duration_seconds",
		Help:    "Time to commit one shard round to Pebble with a synced WAL write, from writing its batch to durable (waiting behind the round before it included).",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)})
	m.CommitPostings = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_commit_postings",
		Help:    "Postings per committed shard round (the group-commit batch size).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16)})
	m.HotFlushLegs = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_hot_flush_legs",
		Help:    "Legs per hot-account buffer flush: the inflows one aggregated delivery carries.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14)})
	m.authDenials = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_auth_denials_total",
		Help: "Calls refused by authentication (UNAUTHENTICATED) or authorisation (PERMISSION_DENIED), by gRPC method (or notify) and reason: missing, malformed, bad_token, unknown_cert, role, unlisted."},
		[]string{"method", "reason"})
	m.panics = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_grpc_panics_total",
		Help: "Calls whose handler panicked, by gRPC method: answered INTERNAL, the process serves on. Any is a bug."},
		[]string{"method"})
	m.streamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_transfer_stream_requests_total",
		Help: "Requests answered on CreateTransfersStream, by the gRPC code of the answer (OK: the request ran; its transfers are counted in ledger_transfers_total)."},
		[]string{"code"})
	m.streams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_transfer_streams",
		Help: "CreateTransfersStream streams open."})
	m.streamBatch = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_transfer_stream_batch_requests",
		Help:    "Stream requests gathered into one batch to the ledger.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14)})
	m.Registry.MustRegister(m.transfers, m.accounts, m.payments, m.requestSeconds, m.CommitSeconds, m.CommitPostings,
		m.HotFlushLegs, m.authDenials, m.panics, m.streamRequests, m.streams, m.streamBatch)
	m.streamRequests.WithLabelValues(codes.OK.String())
	// The zero series of the commonest denial, per method: increase() then counts a first
	// denial instead of missing it (a series that appears at 1 has no increase).
	for method, a := range methodRoles {
		if a&accessOpen == 0 {
			m.authDenials.WithLabelValues(method, "missing")
		}
	}
	m.authDenials.WithLabelValues(NotifyMethod, "missing")
	for method := range methodRoles { // at 0 from the start, for increase() to see a first panic
		m.panics.WithLabelValues(method)
	}
	for r := 1; r < 256; r++ {
		if name := ledger.TransferResult(r).String(); name != "unknown" {
			m.transferCounter[r] = m.transfers.WithLabelValues(name)
		}
		if name := ledger.AccountResult(r).String(); name != "unknown" {
			m.accountCounter[r] = m.accounts.WithLabelValues(name)
		}
	}
	for f := range paymentForms {
		form := "unspecified"
		if f > 0 {
			form = payment.Form(f).String()
		}
		for _, r := range payment.Results() {
			m.paymentCounter[f][r] = m.payments.WithLabelValues(form, r.String())
		}
	}
	return m
}

// paymentForms bounds the forms counted: 0 (unspecified) to payment.Pay.
const paymentForms = int(payment.Pay) + 1

// countPayment counts one payment request's result by its form.
func (m *Metrics) countPayment(f payment.Form, r payment.Result) {
	if m != nil && int(f) < paymentForms && m.paymentCounter[f][r] != nil {
		m.paymentCounter[f][r].Inc()
	}
}

func (m *Metrics) countTransfer(r ledger.TransferResult) {
	if m != nil && m.transferCounter[r] != nil {
		m.transferCounter[r].Inc()
	}
}

func (m *Metrics) streamOpened() {
	if m != nil {
		m.streams.Inc()
	}
}

func (m *Metrics) streamClosed() {
	if m != nil {
		m.streams.Dec()
	}
}

// countStream counts a gathered batch of n requests, all answered with err's code.
func (m *Metrics) countStream(n int, err error) {
	if m != nil {
		m.streamRequests.WithLabelValues(codeOf(err).String()).Add(float64(n))
		m.streamBatch.Observe(float64(n))
	}
}

// countPanic counts a panic of a method's code that no interceptor recovered.
func (m *Metrics) countPanic(method string) {
	if m != nil {
		m.panics.WithLabelValues(method).Inc()
	}
}

// countStreamRefused counts a stream request refused before it was gathered.
func (m *Metrics) countStreamRefused(err error) {
	if m != nil {
		m.streamRequests.WithLabelValues(codeOf(err).String()).Inc()
	}
}

func (m *Metrics) countAccount(r ledger.AccountResult) {
	if m != nil && m.accountCounter[r] != nil {
		m.accountCounter[r].Inc()
	}
}

func (m *Metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	m.requestSeconds.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

// recovered logs and counts a handler's panic; the call is answered INTERNAL.
func (m *Metrics) recovered(ctx context.Context, p any) error {
	method, _ := grpc.Method(ctx)
	slog.Error("api: a call's handler panicked (a bug); answered INTERNAL", "method", method, "panic", fmt.Sprint(p),
		"stack", string(debug.Stack()))
	m.countPanic(method)
	return status.Error(codes.Internal, "internal error (logged)")
}

// WatchLedger exports the running ledger's gauges and counters, read at scrape time.
func (m *Metrics) WatchLedger(l *actors.Ledger) {
	m.Registry.MustRegister(&ledgerCollector{l: l})
}

var (
	descPostings = prometheus.NewDesc("ledger_postings_total",
		"Postings (journal entries) committed.", nil, nil)
	descCommits = prometheus.NewDesc("ledger_commits_total",
		"Shard rounds committed to Pebble.", nil, nil)
	descRedelivered = prometheus.NewDesc("ledger_legs_redelivered_total",
		"Credit legs sent again from an outbox (after recovery, or unanswered too long).", nil, nil)
	descCommitErrors = prometheus.NewDesc("ledger_storage_commit_errors_total",
		"Rounds whose commit to Pebble failed. Each stops the process before anything of the round is acknowledged; restart recovers from storage.", nil, nil)
	descResent = prometheus.NewDesc("ledger_claims_resent_total",
		"Transfer id claims and claim releases sent again to another shard, unanswered.", nil, nil)
	descDupMessages = prometheus.NewDesc("ledger_leg_messages_duplicate_total",
		"Leg messages a credit shard received twice and dropped the second time.", nil, nil)
	descStaleLegs = prometheus.NewDesc("ledger_legs_stale_total",
		"Copies of credit legs dropped by the credit shard as older than a forget of their sender (never applied twice).", nil, nil)
	descUnexpected = prometheus.NewDesc("ledger_unexpected_messages_total",
		"Messages a shard actor did not expect; should stay 0.", nil, nil)
	descQueued = prometheus.NewDesc("ledger_shard_requests_in_flight",
		"Requests a shard admitted and has not answered yet (bounded by --shard-requests-max).", []string{"shard"}, nil)
	descQueuedEvents = prometheus.NewDesc("ledger_shard_events_in_flight",
		"Accounts and transfers a shard admitted and has not answered yet (bounded by --shard-events-max).",
		[]string{"shard"}, nil)
	descOutbox = prometheus.NewDesc("ledger_outbox_legs",
		"Split transfers in flight: credit legs a shard sent and has not seen answered.", []string{"shard"}, nil)
	descOldest = prometheus.NewDesc("ledger_outbox_oldest_age_seconds",
		"Age of the oldest unanswered credit leg of a shard (0 when none).", []string{"shard"}, nil)
	descBuffered = prometheus.NewDesc("ledger_hot_buffered_legs",
		"Inflows to hot accounts durable at a shard and waiting in its buffers to be sent.", []string{"shard"}, nil)
	descHotFlushes = prometheus.NewDesc("ledger_hot_flushes_total",
		"Hot-account buffers sent (one per account buffer), by reason: interval, size (a buffer reached its limit), drain (end of day, shutdown), along (with other legs to the same shard).",
		[]string{"reason"}, nil)
	descClockSkew = prometheus.NewDesc("ledger_clock_skew_seconds",
		"Wall clock minus the time shards stamp with, while they do not follow it (a step past --clock-skew-max, or a stored clock ahead at start); 0 otherwise.",
		nil, nil)
	descClockJumps = prometheus.NewDesc("ledger_clock_jumps_total",
		"Steps of the wall clock past --clock-skew-max, not followed (restart to take the new time).", nil, nil)
	descStalls = prometheus.NewDesc("ledger_storage_write_stalls_total",
		"Times Pebble delayed writes because flushes or compactions fell behind; every commit waits meanwhile.", nil, nil)
	descStallSeconds = prometheus.NewDesc("ledger_storage_write_stall_seconds_total",
		"Time Pebble delayed writes, in total.", nil, nil)
	descFlushes     = prometheus.NewDesc("ledger_storage_flushes_total", "Memtables flushed to L0.", nil, nil)
	descCompactions = prometheus.NewDesc("ledger_storage_compactions_total", "Pebble compactions finished.", nil, nil)
	descDebt        = prometheus.NewDesc("ledger_storage_compaction_debt_bytes",
		"Pebble's estimate of the bytes to compact before the LSM is stable.", nil, nil)
	descL0Files     = prometheus.NewDesc("ledger_storage_l0_files", "SSTables in L0 (many: compactions are behind).", nil, nil)
	descL0Sublevels = prometheus.NewDesc("ledger_storage_l0_sublevels", "L0 sublevels: L0's read amplification.", nil, nil)
	descTables      = prometheus.NewDesc("ledger_storage_tables",
		"SSTables in all levels (each holds one key kind, or one shard's or log's keys of a kind).", nil, nil)
	descWALBytes   = prometheus.NewDesc("ledger_storage_wal_bytes_total", "Bytes written to the write-ahead log.", nil, nil)
	descTableBytes = prometheus.NewDesc("ledger_storage_sstable_bytes_written_total",
		"Bytes written to sstables by flushes and compactions (divided by the WAL bytes: write amplification).", nil, nil)
	descDisk     = prometheus.NewDesc("ledger_storage_disk_bytes", "Disk space the store uses.", nil, nil)
	descDiskFree = prometheus.NewDesc("ledger_storage_disk_free_bytes",
		"Free space of the file system the store is on, that ledgerd may use (what df shows as available).", nil, nil)
	descDiskSize = prometheus.NewDesc("ledger_storage_disk_size_bytes",
		"Size of the file system the store is on.", nil, nil)
	descZombieBytes = prometheus.NewDesc("ledger_storage_zombie_table_bytes",
		"SSTables compacted out of the store that an open iterator still holds on disk (a long read pins them).", nil, nil)
	descSnapshotPinned = prometheus.NewDesc("ledger_storage_snapshot_pinned_bytes_total",
		"Bytes of keys flushes and compactions kept only because an open snapshot could see them.", nil, nil)
	descTransit = prometheus.NewDesc("ledger_transit_balance",
		"Credits minus debits posted to all transit accounts of a ledger: money between the legs of split transfers.",
		[]string{"ledger"}, nil)
)

type ledgerCollector struct{ l *actors.Ledger }

func (c *ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPostings, descCommits, descRedelivered, descUnexpected,
		descCommitErrors, descResent, descStaleLegs, descDupMessages,
		descQueued, descQueuedEvents, descOutbox, descOldest, descBuffered, descHotFlushes, descTransit, descClockSkew,
		descClockJumps, descStalls, descStallSeconds, descFlushes, descCompactions, descDebt, descL0Files, descL0Sublevels,
		descTables, descWALBytes, descTableBytes, descDisk, descDiskFree, descDiskSize, descZombieBytes, descSnapshotPinned} {
		ch <- d
	}
}

func (c *ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.l.Stats()
	ch <- prometheus.MustNewConstMetric(descPostings, prometheus.CounterValue, float64(st.Postings.Load()))
	ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(st.Commits.Load()))
	ch <- prometheus.MustNewConstMetric(descRedelivered, prometheus.CounterValue, float64(st.Redelivered.Load()))
	ch <- prometheus.MustNewConstMetric(descUnexpected, prometheus.CounterValue, float64(st.Unexpected.Load()))
	ch <- prometheus.MustNewConstMetric(descCommitErrors, prometheus.CounterValue, float64(st.StorageErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(st.Resent.Load()))
	ch <- prometheus.MustNewConstMetric(descStaleLegs, prometheus.CounterValue, float64(st.StaleLegs.Load()))
	ch <- prometheus.MustNewConstMetric(descDupMessages, prometheus.CounterValue, float64(st.DuplicateMessages.Load()))
	ch <- prometheus.MustNewConstMetric(descClockSkew, prometheus.GaugeValue, time.Duration(st.ClockSkewNanos.Load()).Seconds())
	ch <- prometheus.MustNewConstMetric(descClockJumps, prometheus.CounterValue, float64(st.ClockJumps.Load()))
	for r, name := range driver.FlushReasonNames {
		ch <- prometheus.MustNewConstMetric(descHotFlushes, prometheus.CounterValue, float64(st.HotFlushes[r].Load()), name)
	}
	ss := c.l.StorageStats()
	for _, m := range []struct {
		d *prometheus.Desc
		t prometheus.ValueType
		v float64
	}{
		{descStalls, prometheus.CounterValue, float64(ss.WriteStalls)},
		{descStallSeconds, prometheus.CounterValue, ss.WriteStallSeconds},
		{descFlushes, prometheus.CounterValue, float64(ss.Flushes)},
		{descCompactions, prometheus.CounterValue, float64(ss.Compactions)},
		{descDebt, prometheus.GaugeValue, float64(ss.CompactionDebtBytes)},
		{descL0Files, prometheus.GaugeValue, float64(ss.L0Files)},
		{descL0Sublevels, prometheus.GaugeValue, float64(ss.L0Sublevels)},
		{descTables, prometheus.GaugeValue, float64(ss.Tables)},
		{descWALBytes, prometheus.CounterValue, float64(ss.WALBytes)},
		{descTableBytes, prometheus.CounterValue, float64(ss.SSTableBytesWritten)},
		{descDisk, prometheus.GaugeValue, float64(ss.DiskBytes)},
		{descZombieBytes, prometheus.GaugeValue, float64(ss.ZombieTableBytes)},
		{descSnapshotPinned, prometheus.CounterValue, float64(ss.SnapshotPinnedBytes)},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v)
	}
	if ss.DiskKnown {
		ch <- prometheus.MustNewConstMetric(descDiskFree, prometheus.GaugeValue, float64(ss.DiskFreeBytes))
		ch <- prometheus.MustNewConstMetric(descDiskSize, prometheus.GaugeValue, float64(ss.DiskSizeBytes))
	}
	now := time.Now()
	for s := 0; s < int(c.l.Shards()); s++ {
		label := strconv.Itoa(s)
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(c.l.AdmittedRequests(s)), label)
		ch <- prometheus.MustNewConstMetric(descQueuedEvents, prometheus.GaugeValue, float64(c.l.AdmittedEvents(s)), label)
		ch <- prometheus.MustNewConstMetric(descOutbox, prometheus.GaugeValue, float64(c.l.OutboxLegs(s)), label)
		age := 0.0
		if oldest := c.l.OutboxOldest(s); !oldest.IsZero() {
			age = now.Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, label)
		ch <- prometheus.MustNewConstMetric(descBuffered, prometheus.GaugeValue, float64(c.l.BufferedLegs(s)), label)
	}
	transit, err := c.l.TransitBalances()
	if err != nil {
		return
	}
	for l, v := range transit {
		f, _ := v.Float64()
		ch <- prometheus.MustNewConstMetric(descTransit, prometheus.GaugeValue, f, strconv.Itoa(int(l)))
	}
}
