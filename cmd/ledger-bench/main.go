// Command ledger-bench is the ledger's load tester. By default it starts a ledger in this
// process on a temporary directory (real Pebble with synced WAL, the same actors, the real
// gRPC server on loopback) and drives it; --addr drives a running ledgerd instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"time"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/bench"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/internal/logging"
	"github.com/ledgercore/ledger/internal/procs"
	"github.com/ledgercore/ledger/storage"
)

// Exit status: 0 the run passed (or --help), 1 it failed or could not run.
func main() {
	err := run(os.Args[1:])
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "ledger-bench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var c bench.Config
	var jsonPath, htmlPath, cpuProfile, memProfile, tracePath string
	var embedded, quiet bool
	var repeat, extraProcs int
	fs := flag.NewFlagSet("ledger-bench", flag.ContinueOnError)
	fs.BoolVar(&embedded, "embedded", true, "run a ledger in this process (the default; --addr turns it off)")
	fs.StringVar(&c.Addr, "addr", "", "drive a running ledgerd at host:port instead")
	c.Security.RegisterFlags(fs) // --token-file, --tls-ca, ... for --addr
	fs.BoolVar(&c.InProcess, "in-process", false, "embedded: call the ledger directly, skipping gRPC")
	fs.BoolVar(&c.Subscribe, "subscribe", false, "follow the event stream during the run and report its lag (embedded: from its start, over gRPC or, with --in-process, directly; --addr: from the sequence after the last one at the start, over gRPC, its head read from --metrics-addr)")
	fs.StringVar(&c.DataDir, "data-dir", "", "embedded: the store's directory (default: a temporary one, removed after)")
	fs.IntVar(&c.Shards, "shards", actors.ShardsDefault, "embedded: shard actors")
	fs.DurationVar(&c.HotFlushInterval, "hot-flush-interval", actors.HotFlushIntervalDefault,
		"embedded: how long a buffer of inflows to a hot account waits before it is sent")
	fs.IntVar(&c.BackgroundNice, "background-nice", storage.BackgroundNiceDefault, "embedded: nice value (1-19) of the threads running Pebble's flushes and compactions, as ledgerd's (0: the process's priority; Linux only)")
	fs.IntVar(&extraProcs, "extra-procs", procs.ExtraDefault, "embedded: Go Ps beyond the CPUs, as ledgerd's --extra-procs")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "--addr: ledgerd's metrics address, to report its CPU and memory")
	fs.IntVar(&c.Accounts, "accounts", 10_000, "accounts the transfers move between")
	fs.IntVar(&c.Transfers, "transfers", 1_000_000, "transfers to make")
	fs.IntVar(&c.Batch, "batch", 8190, "transfers per request (1 to 8190)")
	fs.IntVar(&c.Concurrency, "concurrency", 4, "requests in flight")
	fs.StringVar(&c.Distribution, "distribution", bench.Uniform, "which accounts: uniform, zipf or hot")
	fs.IntVar(&c.HotAccounts, "hot-accounts", 1, "hot: how many accounts are hot")
	fs.Float64Var(&c.HotPercent, "hot-percent", 90, "hot: the percentage of transfers that credit a hot account")
	fs.BoolVar(&c.HotFlagged, "hot-flagged", true, "hot: open the hot accounts flagged hot, so inflows from other shards are buffered")
	fs.BoolVar(&c.Pending, "pending", false, "two-phase: hold each amount, then post the hold")
	fs.BoolVar(&c.ClientBatching, "client-batching", false, "with --batch 1: send each transfer alone through the Go client's automatic batching")
	fs.BoolVar(&c.PrepareAhead, "prepare-ahead", true, "make and encode each caller's next request while its request is in flight (CreateTransfers through gRPC, not --pending, --streams or --client-batching)")
	fs.IntVar(&c.Streams, "streams", 0, "send each request (of --batch transfers) on one of N CreateTransfersStream streams shared by the callers, one connection each (0: a CreateTransfers call per request)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the workload")
	fs.BoolVar(&c.Shadow, "shadow", false, "shadow mode: the run's accounts and transfers use the shadow ledger ("+
		fmt.Sprint(bench.ShadowLedger)+") and ids, and an embedded --data-dir gets a shadow/ store of its own")
	fs.Uint64Var(&c.IDBase, "id-base", 0, "first account and transfer id (default: fresh per run)")
	fs.StringVar(&c.Workload, "workload", bench.Transfers, "transfers (ledger transfers) or payments (payment orders through PaymentService)")
	fs.IntVar(&c.Orders, "orders", 200_000, "payments: orders to make after funding every user (--accounts users) by a recharge")
	fs.Float64Var(&c.Rate, "rate", 0, "payments: offer the orders open loop at this many a second (a call of --batch orders falls due every batch/rate seconds; --concurrency callers take them; latency counts from when a call fell due); 0: closed loop")
	fs.StringVar(&c.Mix, "mix", bench.DefaultMix, "payments: the forms' weights (pay: a third card, a third balance, a third coupon+balance+card; refund: of a payment accepted earlier)")
	fs.StringVar(&c.Channel, "channel", "demo", "the payment channel's name (with --addr: the one ledgerd runs, e.g. ledgerd --fake-channel demo)")
	fs.DurationVar(&c.ChannelLatency, "channel-latency", 20*time.Millisecond, "embedded: the simulated channel's latency before it decides a request")
	fs.Float64Var(&c.ChannelRate, "channel-rate", 100_000, "embedded: requests per second the gateway sends to the channel (ledgerd's default is 10000)")
	fs.IntVar(&c.ChannelInFlight, "channel-in-flight", 256, "embedded: requests at the channel at once (as ledgerd's --channel-in-flight)")
	fs.DurationVar(&c.ChannelTimeout, "channel-timeout", 5*time.Second, "embedded: how long one call to the channel may take (as ledgerd's)")
	fs.IntVar(&c.ChannelBatch, "channel-batch", 64, "embedded: requests to the channel in one exchange when several are ready (as ledgerd's --channel-batch; 1: one per exchange)")
	fs.IntVar(&c.NoticeBatch, "notice-batch", 64, "embedded: notices the simulated channel posts together (1: one per post)")
	fs.DurationVar(&c.ChannelLinger, "channel-linger", gateway.LingerServer, "embedded: how long a request waits for others to share its exchange with the channel (as ledgerd's --channel-linger)")
	fs.DurationVar(&c.NoticeLinger, "notice-linger", fake.NoticeLingerServed, "embedded: how long a notice waits for others to share its post (as fakechannel's --notice-linger)")
	fs.IntVar(&c.CallbackConcurrency, "callback-concurrency", 64, "embedded: callbacks the simulated channel posts at once (fake's default is 16)")
	fs.StringVar(&c.ChannelDown, "channel-down", "", "transfers workload with the payment layer's channel down: degraded (SetChannelDegraded) or dead (embedded: the simulated channel closed, the circuit opens)")
	fs.BoolVar(&c.PaymentLayer, "payment-layer", false, "embedded transfers workload: run the payment layer alongside, channel up (the baseline of --channel-down)")
	fs.Float64Var(&c.BackgroundOrders, "background-orders", 0, "transfers workload: card payments per second sent alongside through the payment layer")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 2*time.Minute, "payments: how long to wait for accepted orders to become final")
	fs.StringVar(&jsonPath, "json", "", "write the result as JSON to this file")
	fs.StringVar(&htmlPath, "html", "", "write a self-contained HTML report to this file")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	fs.StringVar(&tracePath, "trace", "", "write an execution trace of the run to this file (go tool trace; -pprof=sched for where goroutines waited for a core)")
	fs.StringVar(&memProfile, "memprofile", "", "write a heap profile at the end to this file")
	fs.BoolVar(&quiet, "quiet", false, "no live progress line")
	fs.IntVar(&repeat, "repeat", 1, "run the workload this many times (a fresh ledger each time) and report the median run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	batchSet := false
	fs.Visit(func(f *flag.Flag) { batchSet = batchSet || f.Name == "batch" })
	if c.Workload == bench.Payments && !batchSet {
		c.Batch = bench.PaymentsBatchDefault
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !embedded && c.Addr == "" {
		return errors.New("--embedded=false needs --addr")
	}
	if err := procs.CheckExtra(extraProcs); err != nil {
		return fmt.Errorf("--extra-procs %w", err)
	}
	if c.Addr == "" {
		procs.Extra(extraProcs) // as ledgerd does
	}
	if !quiet {
		c.Progress = os.Stderr
	}
	// Only warnings and errors: the progress line and the summary are the output.
	if _, err := logging.Setup(os.Stderr, logging.FormatText, "warn"); err != nil {
		return err
	}
	for _, rec := range []struct {
		path  string
		start func(io.Writer) error
		stop  func()
	}{{cpuProfile, pprof.StartCPUProfile, pprof.StopCPUProfile}, {tracePath, trace.Start, trace.Stop}} {
		if rec.path == "" {
			continue
		}
		f, err := os.Create(rec.path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := rec.start(f); err != nil {
			return err
		}
		defer rec.stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if repeat < 1 {
		return errors.New("--repeat must be positive")
	}
	var runs []*bench.Result
	for i := 0; i < repeat; i++ {
		res, err := bench.Run(ctx, c)
		if err != nil {
			return err
		}
		if repeat > 1 {
			fmt.Printf("run %d of %d:\n", i+1, repeat)
		}
		res.WriteText(os.Stdout)
		runs = append(runs, res)
		c.IDBase = 0 // a fresh id range for the next run against the same ledgerd
	}
	res := bench.Median(runs)
	if repeat > 1 {
		unit := "transfers/s"
		if c.Workload == bench.Payments {
			unit = "orders/s completed"
		}
		fmt.Printf("median of %d runs: %.0f %s (min %.0f, max %.0f), request p99 %.2fms (min %.2f, max %.2f)\n",
			repeat, res.TransfersPerSecond, unit, res.RunsMin, res.RunsMax, res.LatencyP99Ms, res.P99Min, res.P99Max)
	}
	if jsonPath != "" {
		if err := res.WriteJSON(jsonPath); err != nil {
			return err
		}
	}
	if htmlPath != "" {
		if err := res.WriteHTML(htmlPath); err != nil {
			return err
		}
	}
	if memProfile != "" {
		f, err := os.Create(memProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			return err
		}
	}
	if res.BalanceCheck[:2] != "ok" {
		return errors.New("the balance check failed")
	}
	return nil
}
