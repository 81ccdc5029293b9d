// Package bench is the load tester behind cmd/ledger-bench: workloads, targets (an embedded
// ledger through gRPC or in process, or a running ledgerd), latency recording with HDR
// histograms, and the text, JSON and HTML reports.
package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// Distributions of the accounts a workload touches.
const (
	Uniform = "uniform" // debit and credit accounts uniform over all accounts
	Zipf    = "zipf"    // credit accounts Zipf-distributed: a few accounts take most inflows
	Hot     = "hot"     // HotPercent of transfers credit one of HotAccounts accounts
)

// ShadowLedger is the ledger (currency code) of shadow-mode accounts, and ShadowIDBit marks
// their ids: load-test accounts and transfers never share a ledger or an id with real ones.
const (
	ShadowLedger = 7000
	ShadowIDBit  = uint64(1) << 62
)

// Config is one benchmark run.
type Config struct {
	Addr string // a running ledgerd; empty runs an embedded ledger
	// Security is how to reach Addr: TLS and a bearer token (zero: plaintext, none).
	Security  client.Security
	InProcess bool   // embedded only: call the ledger directly, skipping gRPC
	DataDir   string // embedded only: the store's directory (empty: a temporary one)
	Shards    int    // embedded only
	// HotFlushInterval is the embedded ledger's hot-account flush interval (0: its default).
	HotFlushInterval time.Duration
	// BackgroundNice is the embedded store's storage.Options.BackgroundNice (0: none).
	BackgroundNice int
	MetricsAddr    string // --addr only: ledgerd's metrics address, to report its CPU and memory
	// Subscribe follows the event stream during the run (embedded: over gRPC, or in process
	// with InProcess) and reports whether it kept up.
	Subscribe bool

	Accounts     int
	Transfers    int
	Batch        int
	Concurrency  int
	Distribution string
	HotAccounts  int
	HotPercent   float64
	// HotFlagged opens the hot accounts flagged hot (and internal), so that inflows from other
	// shards go through the hot-account buffers.
	HotFlagged bool
	Pending    bool // two-phase: every transfer is a hold, then a post of it
	// ClientBatching sends each transfer alone through the Go client's automatic batching
	// (client.CreateTransfer), as upstream services with one transfer at a time would.
	ClientBatching bool
	// Streams sends each request on one of this many CreateTransfersStream streams (one
	// connection each) shared by the callers, as a caller in any language can; 0: one
	// CreateTransfers call per request.
	Streams int
	// PrepareAhead makes and encodes a worker's next request while its request is in flight
	// (client.EncodeTransfers), so that the ledger is measured rather than the load
	// generator's encoding: one request in flight still means one on the wire. Plain
	// CreateTransfers calls through gRPC only (not two-phase, streams, client batching or in
	// process).
	PrepareAhead bool
	Seed         uint64
	Shadow       bool
	IDBase       uint64 // first account and transfer id (0: derived from the clock)

	// Workload is Transfers (the default) or Payments.
	Workload string
	// Payments workload (see payments.go): Orders payment orders after funding every user
	// (Accounts users) by a recharge; Mix weighs the forms ("pay=40,recharge=25,...").
	Orders int
	Mix    string
	// Rate, when set, offers the payments workload's orders open loop at that many a second: a
	// call of Batch orders falls due every Batch/Rate seconds, Concurrency callers take the
	// calls as they fall due, and a call's latency counts from when it was due, so a slow
	// answer that delays the calls after it is counted in them too (no coordinated omission).
	Rate float64
	// The payment layer's channel: its name (ledgerd's --fake-channel NAME with --addr), and,
	// embedded, the simulated channel's latency, the gateway's limits (ledgerd's
	// --channel-rate, --channel-in-flight, --channel-timeout) and the simulated channel's
	// callback concurrency.
	Channel             string
	ChannelLatency      time.Duration
	ChannelRate         float64
	ChannelInFlight     int
	ChannelTimeout      time.Duration
	CallbackConcurrency int
	// ChannelBatch is the gateway's calls per exchange (ledgerd's --channel-batch) and
	// ChannelLinger how long a call waits for others to share it (--channel-linger);
	// NoticeBatch the simulated channel's notices per post and NoticeLinger how long a notice
	// waits for others to share its post.
	ChannelBatch  int
	ChannelLinger time.Duration
	NoticeBatch   int
	NoticeLinger  time.Duration
	// ChannelDown runs the workload with the channel down: ChannelDegraded (switched off by
	// SetChannelDegraded) or ChannelDead (embedded: the simulated channel closed, so calls
	// fail and the circuit opens). With the transfers workload it starts the payment layer.
	ChannelDown string
	// PaymentLayer starts the embedded payment layer with the transfers workload too (the
	// baseline of --channel-down); BackgroundOrders sends that many card payments a second
	// alongside the transfers (through the payment layer).
	PaymentLayer     bool
	BackgroundOrders float64
	// RefundAfter: how old a payment must be before it is refunded (0: RefundAfter).
	RefundAfter time.Duration
	// DrainTimeout bounds the wait for accepted orders to become final.
	DrainTimeout time.Duration

	Progress       io.Writer // the live progress line (nil: none)
	ProgressPeriod time.Duration
}

// Validate checks a configuration and fills in what may be derived.
func (c *Config) Validate() error {
	var errs []error
	if c.Accounts < 2 {
		errs = append(errs, fmt.Errorf("--accounts must be at least 2, not %d", c.Accounts))
	}
	if c.Workload != Payments && c.Transfers < 1 {
		errs = append(errs, fmt.Errorf("--transfers must be positive, not %d", c.Transfers))
	}
	if c.Workload != Payments && (c.Batch < 1 || c.Batch > ledger.BatchEventsMax) {
		errs = append(errs, fmt.Errorf("--batch must be 1 to %d, not %d", ledger.BatchEventsMax, c.Batch))
	}
	if !(c.Rate >= 0) || math.IsInf(c.Rate, 0) || c.Rate > 0 && c.Workload != Payments {
		errs = append(errs, fmt.Errorf("--rate is orders a second for --workload payments, not %g", c.Rate))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency must be positive, not %d", c.Concurrency))
	}
	switch {
	case c.Workload == Payments:
	case c.Distribution == Uniform, c.Distribution == Zipf:
	case c.Distribution == Hot:
		if c.HotAccounts < 1 || c.HotAccounts >= c.Accounts {
			errs = append(errs, fmt.Errorf("--hot-accounts must be 1 to %d", c.Accounts-1))
		}
		if c.HotPercent < 0 || c.HotPercent > 100 {
			errs = append(errs, fmt.Errorf("--hot-percent must be 0 to 100"))
		}
	default:
		errs = append(errs, fmt.Errorf("--distribution must be uniform, zipf or hot, not %q", c.Distribution))
	}
	switch c.Workload {
	case "":
		c.Workload = Transfers
	case Transfers, Payments:
	default:
		errs = append(errs, fmt.Errorf("--workload must be transfers or payments, not %q", c.Workload))
	}
	switch c.ChannelDown {
	case "", ChannelDegraded:
	case ChannelDead:
		if c.Addr != "" {
			errs = append(errs, errors.New("--channel-down dead is for the embedded ledger; with --addr use degraded"))
		}
	default:
		errs = append(errs, fmt.Errorf("--channel-down must be degraded or dead, not %q", c.ChannelDown))
	}
	if c.paymentLayer() {
		errs = append(errs, c.validatePayments()...)
	}
	if c.ClientBatching && (c.Batch != 1 || c.InProcess || c.Pending) {
		errs = append(errs, errors.New("--client-batching goes with --batch 1 over gRPC, without --pending"))
	}
	if c.Streams < 0 || c.Streams > StreamsMax {
		errs = append(errs, fmt.Errorf("--streams must be 0 to %d", StreamsMax))
	}
	if c.Streams > 0 && (c.InProcess || c.ClientBatching || c.Workload == Payments) {
		errs = append(errs, errors.New("--streams is for transfers over gRPC, without --client-batching"))
	}
	if c.Addr != "" && (c.InProcess || c.DataDir != "") {
		errs = append(errs, errors.New("--in-process and --data-dir are for the embedded ledger, not --addr"))
	}
	if err := storage.CheckBackgroundNice(c.BackgroundNice); err != nil {
		errs = append(errs, fmt.Errorf("--background-nice: %w", err))
	}
	if c.HotFlushInterval != 0 && (c.HotFlushInterval < time.Millisecond || c.HotFlushInterval > time.Minute) {
		errs = append(errs, fmt.Errorf("--hot-flush-interval must be 1ms to 1m"))
	}
	if c.Shards < 1 || c.Shards > ledger.ShardsMax {
		errs = append(errs, fmt.Errorf("--shards must be 1 to %d", ledger.ShardsMax))
	}
	if c.IDBase == 0 {
		// A fresh id range per run, so runs against one ledgerd never collide.
		c.IDBase = (uint64(time.Now().Unix())%(1<<20))<<40 + 1
	}
	if c.Shadow {
		c.IDBase |= ShadowIDBit
	}
	if c.IDBase+uint64(c.Accounts)+2*uint64(c.Transfers) >= ledger.TransitIDMin {
		errs = append(errs, errors.New("--id-base leaves no room for the run's ids"))
	}
	if c.ProgressPeriod <= 0 {
		c.ProgressPeriod = time.Second
	}
	return errors.Join(errs...)
}

// paymentLayer reports whether the run uses the payment layer.
func (c *Config) paymentLayer() bool {
	return c.Workload == Payments || c.PaymentLayer || c.ChannelDown != "" || c.BackgroundOrders > 0
}

func (c *Config) ledgerID() uint32 {
	if c.Shadow {
		return ShadowLedger
	}
	return 1
}
