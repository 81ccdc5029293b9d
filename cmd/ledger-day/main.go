// Command ledger-day runs one accounting day of simulated payments end to end (package
// sim/day): the ledger on a new store, the payment actors, a simulated channel that injects
// anomalies, end of day, the channel's statement imported, the three-way check of every biz
// id; then it prints the day's trial balance, what reconciliation found and whether it found
// exactly the injected anomalies. The run keeps its own clock, so the day closes and its
// statement is imported "the next morning" in seconds. The store stays in --data-dir: ledgerd
// started on it serves the day's books, records and exceptions.
//
//	go run ./cmd/ledger-day --data-dir ./day-data
//
// Exit status: 0 when reconciliation found exactly the injected anomalies and the trial
// balance passed, 1 when it did not, 2 when the day could not be run (bad flags, a store
// that exists, orders that never settled).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ledgercore/ledger/internal/logging"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/sim/day"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, details, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ledger-day:", err)
		return 2
	}
	cfg.Progress = stdout
	rep, err := day.Run(ctx, cfg)
	if rep != nil {
		if werr := rep.Write(stdout, *details); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "ledger-day:", err)
		return 2
	}
	fmt.Fprintf(stdout, "\nthe store is in %s: `ledgerd --data-dir %s --fake-channel %s` serves it\n", cfg.Dir, cfg.Dir, cfg.Channel)
	if !rep.Exact() {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (c day.Config, details *bool, err error) {
	f := &c.Faults
	fs := flag.NewFlagSet("ledger-day", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: ledger-day [flags]\n\nRuns one accounting day of simulated payments end to end on a new store and reports\nwhat reconciliation found against what the simulated channel injected.\n\nflags:")
		fs.PrintDefaults()
	}
	date := fs.String("date", ledger.DayOfUnix(time.Now().Add(-48*time.Hour).Unix()).String(),
		"the accounting day to run (YYYY-MM-DD); it must have ended, with 10 minutes to spare, on this machine's clock (UTC)")
	details = fs.Bool("details", false, "list every injected anomaly (else only those not found exactly once)")
	logLevel := fs.String("log-level", "error", "the components' log level: debug, info, warn or error (to stderr)")
	logFormat := fs.String("log-format", logging.FormatText, "the components' log format: text or json")
	fs.StringVar(&c.Dir, "data-dir", "day-data", "the new store's directory (must not hold one)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the orders and of the channel's faults")
	fs.IntVar(&c.Users, "users", 50, fmt.Sprintf("users who pay (2 to %d)", day.UsersMax))
	fs.IntVar(&c.Orders, "orders", 2000, fmt.Sprintf("orders of the day after the users' first recharges (0 to %d); a fifth of the succeeded payments are then partly refunded", day.OrdersMax))
	fs.StringVar(&c.Channel, "channel", "demo", "the simulated channel's name")
	fs.DurationVar(&c.SettleTimeout, "settle-timeout", 2*time.Minute, "how long to wait for the orders to settle")
	fs.Float64Var(&f.FailRate, "fail-rate", 0.05, "requests the channel fails")
	fs.Float64Var(&f.TimeoutRate, "timeout-rate", 0.02, "requests whose answer is lost (settled by query-back)")
	fs.Float64Var(&f.DupCallbackRate, "dup-callback-rate", 0.05, "requests whose callback comes twice")
	fs.Float64Var(&f.DupPayRate, "dup-pay-rate", 0.02, "payments the channel collects twice (a duplicate payment, refunded)")
	fs.Float64Var(&f.MismatchRate, "mismatch-rate", 0.02, "payments the channel collects another amount for (an amount mismatch, into suspense)")
	fs.Float64Var(&f.StatementDropRate, "statement-drop-rate", 0.01, "clean txns the statement leaves out (short)")
	fs.Float64Var(&f.StatementAmountRate, "statement-amount-rate", 0.01, "clean txns the statement shows with another amount (amount_mismatch)")
	fs.Float64Var(&f.StatementStatusRate, "statement-status-rate", 0.01, "clean txns the statement shows failed (status_mismatch)")
	fs.Float64Var(&f.StatementLongRate, "statement-long-rate", 0.01, "clean txns the statement follows with a line no one asked for (long)")
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	if fs.NArg() > 0 {
		return c, nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Date, err = ledger.ParseDay(*date); err != nil {
		return c, nil, fmt.Errorf("--date: %w", err)
	}
	// One handler for every line, the actor system's included (it logs through slog's default).
	if c.Log, err = logging.Setup(stderr, *logFormat, *logLevel); err != nil {
		return c, nil, err
	}
	return c, details, nil
}
