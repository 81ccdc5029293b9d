package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Result is what a run measured. The JSON names are the harness's contract with scripts.
type Result struct {
	Workload     string  `json:"workload"`
	Mode         string  `json:"mode"`
	Shards       int     `json:"shards,omitempty"`
	Accounts     int     `json:"accounts"`
	Transfers    int     `json:"transfers"`
	Batch        int     `json:"batch"`
	Concurrency  int     `json:"concurrency"`
	Distribution string  `json:"distribution"`
	HotAccounts  int     `json:"hot_accounts,omitempty"`
	HotPercent   float64 `json:"hot_percent,omitempty"`
	HotFlagged   bool    `json:"hot_flagged,omitempty"`
	Pending      bool    `json:"pending"`
	ClientBatch  bool    `json:"client_batching"`
	PrepareAhead bool    `json:"prepare_ahead"` // each caller's next request made while one is in flight
	Streams      int     `json:"streams"`
	// StreamAnswers is how many answers came back on the transfer streams (--streams).
	StreamAnswers int64  `json:"stream_answers"`
	Shadow        bool   `json:"shadow"`
	Seed          uint64 `json:"seed"`

	DurationSeconds    float64 `json:"duration_seconds"`
	TransfersPerSecond float64 `json:"transfers_per_second"`
	TransfersOK        int64   `json:"transfers_ok"`
	TransfersFailed    int64   `json:"transfers_failed"`
	Requests           int64   `json:"requests"`
	RequestErrors      int64   `json:"request_errors"`
	FirstError         string  `json:"first_error,omitempty"`

	LatencyP50Ms  float64 `json:"latency_p50_ms"`
	LatencyP90Ms  float64 `json:"latency_p90_ms"`
	LatencyP99Ms  float64 `json:"latency_p99_ms"`
	LatencyP999Ms float64 `json:"latency_p999_ms"`
	LatencyMaxMs  float64 `json:"latency_max_ms"`
	// Per transfer: each transfer counts with the latency of the request that carried it.
	TransferLatencyP50Ms float64 `json:"transfer_latency_p50_ms"`
	TransferLatencyP99Ms float64 `json:"transfer_latency_p99_ms"`

	CPUSeconds        float64 `json:"cpu_seconds"`
	PeakRSSBytes      uint64  `json:"peak_rss_bytes"`
	AllocsPerTransfer float64 `json:"allocs_per_transfer,omitempty"`
	BytesPerTransfer  float64 `json:"bytes_per_transfer,omitempty"`
	ServerCPUSeconds  float64 `json:"server_cpu_seconds,omitempty"`
	ServerRSSBytes    uint64  `json:"server_rss_bytes,omitempty"`

	// Embedded only: Pebble during the run.
	WriteStalls         uint64  `json:"storage_write_stalls,omitempty"`
	WriteStallSeconds   float64 `json:"storage_write_stall_seconds,omitempty"`
	WALBytesPerTransfer float64 `json:"storage_wal_bytes_per_transfer,omitempty"`
	WriteAmplification  float64 `json:"storage_write_amplification,omitempty"`
	// DiskBytesPerTransfer is what the store grew by on disk over the run (its write-ahead log
	// included), over the transfers made (embedded, or a remote ledgerd's
	// ledger_storage_disk_bytes); Tables its sstables at the end.
	DiskBytesPerTransfer float64 `json:"storage_disk_bytes_per_transfer,omitempty"`
	Tables               int64   `json:"storage_tables,omitempty"`
	// TenthsPerSecond is the rate of each tenth of the run's transfers, in order: whether the
	// rate holds from the first tenth to the last.
	TenthsPerSecond []float64 `json:"tenths_transfers_per_second,omitempty"`

	BalanceCheck string `json:"balance_check"`

	// With --repeat: the throughput and p99 of every run; this object is the median run's.
	Runs    []float64 `json:"runs_transfers_per_second,omitempty"`
	RunsMin float64   `json:"runs_min_transfers_per_second,omitempty"`
	RunsMax float64   `json:"runs_max_transfers_per_second,omitempty"`
	P99Min  float64   `json:"runs_min_latency_p99_ms,omitempty"`
	P99Max  float64   `json:"runs_max_latency_p99_ms,omitempty"`

	// The transfers workload alongside the payment layer (--payment-layer, --channel-down,
	// --background-orders).
	PaymentLayer       bool    `json:"payment_layer,omitempty"`
	ChannelDown        string  `json:"channel_down,omitempty"`
	BackgroundRate     float64 `json:"background_orders_per_second,omitempty"`
	BackgroundAccepted int64   `json:"background_orders_accepted,omitempty"`
	BackgroundRefused  int64   `json:"background_orders_refused,omitempty"`

	// The payments workload. Latencies above are those of CreatePayments calls (the
	// voucher's round trip); "per transfer" ones are per order. TransfersPerSecond is
	// OrdersCompletedPerSecond (the figure --repeat takes the median of).
	Orders int     `json:"orders,omitempty"`
	Rate   float64 `json:"offered_orders_per_second,omitempty"`
	// LateP50Ms, LateP99Ms and LateMaxMs (open loop): how long after falling due calls were
	// sent, for want of a free caller (the harness's own queue, counted in the latency).
	LateP50Ms                        float64          `json:"sent_late_p50_ms,omitempty"`
	LateP99Ms                        float64          `json:"sent_late_p99_ms,omitempty"`
	LateMaxMs                        float64          `json:"sent_late_max_ms,omitempty"`
	Mix                              string           `json:"mix,omitempty"`
	Channel                          string           `json:"channel,omitempty"`
	ChannelLatencyMs                 float64          `json:"channel_latency_ms,omitempty"`
	FundUsers                        int              `json:"fund_users,omitempty"`
	FundSeconds                      float64          `json:"fund_seconds,omitempty"`
	OrdersAccepted                   int64            `json:"orders_accepted,omitempty"`
	OrdersAcceptedByForm             map[string]int64 `json:"orders_accepted_by_form,omitempty"`
	OrdersRefused                    int64            `json:"orders_refused,omitempty"`
	OrdersRefusedByResult            map[string]int64 `json:"orders_refused_by_result,omitempty"`
	RefundsAsPayments                int64            `json:"refunds_made_as_payments,omitempty"`
	OrdersCompleted                  int64            `json:"orders_completed,omitempty"`
	OrdersSucceeded                  int64            `json:"orders_succeeded,omitempty"`
	OrdersFailed                     int64            `json:"orders_failed,omitempty"`
	OrdersFailedByResult             map[string]int64 `json:"orders_failed_by_result,omitempty"`
	OrdersInFlight                   int64            `json:"orders_in_flight,omitempty"`
	OrdersCompletedInWindow          int64            `json:"orders_completed_in_window,omitempty"`
	DrainSeconds                     float64          `json:"drain_seconds,omitempty"`
	OrdersAcceptedPerSecond          float64          `json:"orders_accepted_per_second,omitempty"`
	OrdersCompletedPerSecond         float64          `json:"orders_completed_per_second,omitempty"`
	OrdersCompletedInWindowPerSecond float64          `json:"orders_completed_in_window_per_second,omitempty"`
	AllocsPerOrder                   float64          `json:"allocs_per_order,omitempty"`
	BytesPerOrder                    float64          `json:"bytes_per_order,omitempty"`

	ThroughputSeries []float64       `json:"throughput_series"`
	LatencyBuckets   []LatencyBucket `json:"latency_buckets"`
}

// LatencyBucket is one bar of the request latency histogram.
type LatencyBucket struct {
	FromMs float64 `json:"from_ms"`
	ToMs   float64 `json:"to_ms"`
	Count  int64   `json:"count"`
}

func ms(micros int64) float64 { return float64(micros) / 1000 }

func newResult(c *Config, elapsed time.Duration, r *runner, request, transfer *hdrhistogram.Histogram,
	series []float64) *Result {
	res := &Result{Accounts: c.Accounts, Transfers: c.Transfers, Batch: c.Batch, Concurrency: c.Concurrency,
		Distribution: c.Distribution, Pending: c.Pending, ClientBatch: c.ClientBatching, PrepareAhead: r.ahead != nil, Streams: c.Streams, Shadow: c.Shadow, Seed: c.Seed,
		DurationSeconds: elapsed.Seconds(), TransfersFailed: r.failed.Load(), Requests: r.requests.Load(),
		RequestErrors: r.errs.Load(), ThroughputSeries: series, TenthsPerSecond: r.tenthRates(),
		LatencyP50Ms: ms(request.ValueAtQuantile(50)), LatencyP90Ms: ms(request.ValueAtQuantile(90)),
		LatencyP99Ms: ms(request.ValueAtQuantile(99)), LatencyP999Ms: ms(request.ValueAtQuantile(99.9)),
		LatencyMaxMs: ms(request.Max()), TransferLatencyP50Ms: ms(transfer.ValueAtQuantile(50)),
		TransferLatencyP99Ms: ms(transfer.ValueAtQuantile(99))}
	if c.Distribution == Hot {
		res.HotAccounts, res.HotPercent, res.HotFlagged = c.HotAccounts, c.HotPercent, c.HotFlagged
	}
	res.TransfersOK = r.done.Load() - res.TransfersFailed
	if r.pool != nil {
		res.StreamAnswers = r.pool.answers.Load()
	}
	res.TransfersPerSecond = float64(res.TransfersOK) / elapsed.Seconds()
	res.LatencyBuckets = buckets(request)
	return res
}

// buckets folds the histogram into at most 40 bars on a logarithmic scale.
func buckets(h *hdrhistogram.Histogram) []LatencyBucket {
	if h.TotalCount() == 0 {
		return nil
	}
	lo, hi := math.Log(float64(max(h.Min(), 1))), math.Log(float64(h.Max()+1))
	const bars = 40
	step := (hi - lo) / bars
	if step <= 0 {
		step = 1
	}
	out := make([]LatencyBucket, bars)
	for i := range out {
		out[i].FromMs = math.Exp(lo+float64(i)*step) / 1000
		out[i].ToMs = math.Exp(lo+float64(i+1)*step) / 1000
	}
	for _, b := range h.Distribution() {
		if b.Count == 0 {
			continue
		}
		i := int((math.Log(float64(max(b.From, 1))) - lo) / step)
		out[min(max(i, 0), bars-1)].Count += b.Count
	}
	return out
}

// settleWaitMax bounds how long the balance check waits for credits still on their way (the
// inflows to hot accounts sit in buffers for a flush interval after their replies).
const settleWaitMax = 10 * time.Second

// checkBalances reads every account of the run back: the money in must equal the money out,
// and (when nothing failed) equal the sum of the transfers acknowledged, so none was lost or
// applied twice. While debits and credits differ it reads again, for at most settleWaitMax:
// buffered credits land after their replies.
func (r *runner) checkBalances(ctx context.Context) string {
	deadline := time.Now().Add(settleWaitMax)
	for {
		msg, settled := r.readBalances(ctx)
		if settled || time.Now().After(deadline) || ctx.Err() != nil {
			return msg
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readBalances reads the balances once; settled is false while debits and credits differ.
func (r *runner) readBalances(ctx context.Context) (msg string, settled bool) {
	c := r.cfg
	var debits, credits, debitsPending, creditsPending ledger.Uint128
	found := 0
	for first := 0; first < c.Accounts; first += ledger.BatchEventsMax {
		ids := make([]uint64, 0, ledger.BatchEventsMax)
		for i := first; i < min(first+ledger.BatchEventsMax, c.Accounts); i++ {
			ids = append(ids, c.IDBase+uint64(i))
		}
		as, err := r.tgt.lookupAccounts(ctx, ids)
		if err != nil {
			return "FAILED: lookup: " + err.Error(), true
		}
		for _, a := range as {
			debits = debits.WrapAdd(u128(a.GetDebitsPosted()))
			credits = credits.WrapAdd(u128(a.GetCreditsPosted()))
			debitsPending = debitsPending.WrapAdd(u128(a.GetDebitsPending()))
			creditsPending = creditsPending.WrapAdd(u128(a.GetCreditsPending()))
		}
		found += len(as)
	}
	switch {
	case found != c.Accounts:
		return fmt.Sprintf("FAILED: %d of %d accounts found", found, c.Accounts), true
	case debits != credits || debitsPending != creditsPending:
		return fmt.Sprintf("FAILED: debits %d (pending %d) != credits %d (pending %d)", debits, debitsPending, credits, creditsPending), false
	case r.failed.Load() == 0 && debits != ledger.U128(r.amount.Load()):
		return fmt.Sprintf("FAILED: accounts hold %d, acknowledged transfers moved %d", debits, r.amount.Load()), true
	case r.failed.Load() > 0:
		return fmt.Sprintf("ok: debits = credits = %d (%d transfers failed, so no total to compare)", debits, r.failed.Load()), true
	}
	return fmt.Sprintf("ok: debits = credits = acknowledged amount = %d", debits), true
}

func u128(x *ledgerv1.Uint128) ledger.Uint128 { return ledger.Uint128{Hi: x.GetHi(), Lo: x.GetLo()} }

// storage records what Pebble did between two readings.
func (res *Result) storage(before, after storage.Stats) {
	res.WriteStalls = after.WriteStalls - before.WriteStalls
	res.WriteStallSeconds = after.WriteStallSeconds - before.WriteStallSeconds
	wal := float64(after.WALBytes - before.WALBytes)
	if res.TransfersOK > 0 {
		res.WALBytesPerTransfer = wal / float64(res.TransfersOK)
	}
	if wal > 0 {
		res.WriteAmplification = float64(after.SSTableBytesWritten-before.SSTableBytesWritten) / wal
	}
	res.disk(before.DiskBytes, after.DiskBytes, after.Tables)
}

// disk records what the store grew by on disk over the run, per transfer made, and its
// sstables at the end.
func (res *Result) disk(before, after uint64, tables int64) {
	if res.TransfersOK > 0 && after > before {
		res.DiskBytesPerTransfer = float64(after-before) / float64(res.TransfersOK)
	}
	res.Tables = tables
}

// WriteText prints the summary a person reads.
func (res *Result) WriteText(w io.Writer) {
	if res.Workload == Payments {
		res.writePaymentsText(w)
		return
	}
	fmt.Fprintf(w, "mode            %s", res.Mode)
	if res.Shards > 0 {
		fmt.Fprintf(w, ", shards: %d", res.Shards)
	}
	fmt.Fprintf(w, "\nworkload        %d transfers over %d accounts, batch %d, concurrency %d, %s",
		res.Transfers, res.Accounts, res.Batch, res.Concurrency, res.Distribution)
	if res.Distribution == Hot {
		fmt.Fprintf(w, " (%g%% to %d hot accounts", res.HotPercent, res.HotAccounts)
		if res.HotFlagged {
			fmt.Fprint(w, ", flagged hot: inflows from other shards buffered")
		}
		fmt.Fprint(w, ")")
	}
	if res.Pending {
		fmt.Fprint(w, ", two-phase (hold then post: each counts as a transfer)")
	}
	if res.ClientBatch {
		fmt.Fprint(w, ", one transfer per call through the client's auto-batching")
	}
	if res.Streams > 0 {
		fmt.Fprintf(w, ", each request on one of %d CreateTransfersStream streams", res.Streams)
	}
	if res.PrepareAhead {
		fmt.Fprint(w, ", each caller's next request made while one is in flight")
	}
	if res.Shadow {
		fmt.Fprint(w, ", shadow")
	}
	if res.PaymentLayer {
		fmt.Fprint(w, "\npayment layer   running")
		if res.ChannelDown != "" {
			fmt.Fprintf(w, ", channel %s down (%s)", res.Channel, res.ChannelDown)
		} else {
			fmt.Fprintf(w, ", channel %s up", res.Channel)
		}
		if res.BackgroundRate > 0 {
			fmt.Fprintf(w, ", %.0f card payments/s alongside: %d accepted, %d refused", res.BackgroundRate,
				res.BackgroundAccepted, res.BackgroundRefused)
		}
	}
	fmt.Fprintf(w, "\nthroughput      %.0f transfers/s (%d ok, %d failed, %d requests, %d request errors) in %.2fs\n",
		res.TransfersPerSecond, res.TransfersOK, res.TransfersFailed, res.Requests, res.RequestErrors, res.DurationSeconds)
	fmt.Fprintf(w, "request latency p50 %.2fms  p90 %.2fms  p99 %.2fms  p99.9 %.2fms  max %.2fms\n",
		res.LatencyP50Ms, res.LatencyP90Ms, res.LatencyP99Ms, res.LatencyP999Ms, res.LatencyMaxMs)
	fmt.Fprintf(w, "per transfer    p50 %.2fms  p99 %.2fms\n", res.TransferLatencyP50Ms, res.TransferLatencyP99Ms)
	fmt.Fprintf(w, "this process    %.2f CPU s (%.0f%% of %.2fs), peak RSS %.1f MiB", res.CPUSeconds,
		100*res.CPUSeconds/res.DurationSeconds, res.DurationSeconds, float64(res.PeakRSSBytes)/(1<<20))
	if res.AllocsPerTransfer > 0 {
		fmt.Fprintf(w, ", %.1f allocs and %.0f bytes per transfer", res.AllocsPerTransfer, res.BytesPerTransfer)
	}
	fmt.Fprintln(w)
	if len(res.TenthsPerSecond) == 10 {
		fmt.Fprint(w, "by tenth       ")
		for _, r := range res.TenthsPerSecond {
			fmt.Fprintf(w, " %.0f", r)
		}
		fmt.Fprintf(w, " transfers/s (the last %.0f%% of the first)\n", 100*res.TenthsPerSecond[9]/res.TenthsPerSecond[0])
	}
	if res.WALBytesPerTransfer > 0 {
		fmt.Fprintf(w, "storage         %d write stalls (%.2fs), %.0f WAL bytes per transfer, write amplification %.1f",
			res.WriteStalls, res.WriteStallSeconds, res.WALBytesPerTransfer, res.WriteAmplification)
		res.writeDisk(w)
		fmt.Fprintln(w)
	}
	if res.ServerCPUSeconds > 0 {
		fmt.Fprintf(w, "ledgerd         %.2f CPU s, RSS %.1f MiB", res.ServerCPUSeconds, float64(res.ServerRSSBytes)/(1<<20))
		res.writeDisk(w)
		fmt.Fprintln(w)
	}
	if res.FirstError != "" {
		fmt.Fprintf(w, "first error     %s\n", res.FirstError)
	}
	fmt.Fprintf(w, "balance check   %s\n", res.BalanceCheck)
}

func (res *Result) writeDisk(w io.Writer) {
	if res.DiskBytesPerTransfer > 0 {
		fmt.Fprintf(w, ", store grew %.0f bytes per transfer on disk, %d sstables", res.DiskBytesPerTransfer, res.Tables)
	}
}

// WriteJSON writes the result as one JSON object.
func (res *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteHTML writes a self-contained report page: the summary, throughput over time and the
// latency histogram, drawn as inline SVG (no scripts, nothing fetched).
func (res *Result) WriteHTML(path string) error {
	var text strings.Builder
	res.WriteText(&text)
	page := struct {
		R                *Result
		Summary          string
		Throughput, Bars template.HTML
		Generated        string
	}{R: res, Summary: text.String(), Generated: time.Now().UTC().Format(time.RFC3339)}
	page.Throughput = lineChart(res.ThroughputSeries, "seconds", "transfers/s")
	page.Bars = barChart(res.LatencyBuckets)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reportPage.Execute(f, page); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

const chartW, chartH, pad = 720.0, 240.0, 40.0

func lineChart(ys []float64, xLabel, yLabel string) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f" role="img">`, chartW+2*pad, chartH+2*pad)
	top := 1.0
	for _, y := range ys {
		top = math.Max(top, y)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="12">%s (max %.0f)</text>`, pad, yLabel, top)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12">%s</text>`, chartW, chartH+2*pad-6, xLabel)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, pad, pad, chartW, chartH)
	if len(ys) > 0 {
		b.WriteString(`<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="`)
		for i, y := range ys {
			x := pad + chartW*float64(i+1)/float64(len(ys))
			fmt.Fprintf(&b, "%.1f,%.1f ", x, pad+chartH-chartH*y/top)
		}
		b.WriteString(`"/>`)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func barChart(bs []LatencyBucket) template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg width="%.0f" height="%.0f" role="img">`, chartW+2*pad, chartH+2*pad)
	var top int64 = 1
	for _, x := range bs {
		top = max(top, x.Count)
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, pad, pad, chartW, chartH)
	for i, x := range bs {
		w := chartW / float64(len(bs))
		h := chartH * float64(x.Count) / float64(top)
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#ff7f0e"><title>%.2f-%.2f ms: %d</title></rect>`,
			pad+float64(i)*w, pad+chartH-h, w-1, h, x.FromMs, x.ToMs, x.Count)
	}
	if len(bs) > 0 {
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12">%.2f ms</text>`, pad, chartH+pad+16, bs[0].FromMs)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="12" text-anchor="end">%.2f ms (log scale)</text>`,
			pad+chartW, chartH+pad+16, bs[len(bs)-1].ToMs)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ledger-bench: {{printf "%.0f" .R.TransfersPerSecond}} transfers/s</title>
<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}</style></head>
<body><h1>ledger-bench report</h1><p>Generated {{.Generated}}.</p>
<pre>{{.Summary}}</pre>
<h2>Throughput over time</h2>{{.Throughput}}
<h2>Request latency</h2>{{.Bars}}
</body></html>
`))

type processSample struct {
	ok         bool
	cpuSeconds float64
	rssBytes   uint64
	diskBytes  uint64 // the store's (ledger_storage_disk_bytes)
	tables     int64  // its sstables (ledger_storage_tables)
}

// scrapeProcess reads ledgerd's process collector from its metrics address.
func scrapeProcess(addr string) processSample {
	var s processSample
	if addr == "" {
		return s
	}
	_ = scrapeMetrics(addr, func(name string, v float64) {
		switch name {
		case "process_cpu_seconds_total":
			s.cpuSeconds, s.ok = v, true
		case "process_resident_memory_bytes":
			s.rssBytes = uint64(v)
		case "ledger_storage_disk_bytes":
			s.diskBytes = uint64(v)
		case "ledger_storage_tables":
			s.tables = int64(v)
		}
	})
	return s
}

// scrapeClient scrapes uncompressed: gzip would cost ledgerd more CPU than loopback saves.
var scrapeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableCompression: true}}

// scrapeMetrics reads ledgerd's /metrics (the text format) and hands fn each sample's name
// (with its labels) and value.
func scrapeMetrics(addr string, fn func(name string, v float64)) error {
	resp, err := scrapeClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return fmt.Errorf("bench: scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// Exemplars follow " # "; the value is the field after the labels.
		line, _, _ := strings.Cut(sc.Text(), " # ")
		name, rest, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			fn(name, v)
		}
	}
	return sc.Err()
}

// Median returns the run with the median throughput, annotated with the spread of all runs.
func Median(runs []*Result) *Result {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b *Result) int { return cmp.Compare(a.TransfersPerSecond, b.TransfersPerSecond) })
	med := *sorted[len(sorted)/2]
	if len(runs) == 1 {
		return &med
	}
	med.RunsMin, med.RunsMax = sorted[0].TransfersPerSecond, sorted[len(sorted)-1].TransfersPerSecond
	med.P99Min, med.P99Max = math.Inf(1), 0
	for _, r := range runs {
		med.Runs = append(med.Runs, r.TransfersPerSecond)
		med.P99Min, med.P99Max = math.Min(med.P99Min, r.LatencyP99Ms), math.Max(med.P99Max, r.LatencyP99Ms)
	}
	return &med
}
