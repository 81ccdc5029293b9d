// Command fakechannel is a simulated payment channel (package channel/fake): an HTTP server
// speaking the channel protocol (channel/PROTOCOL.md) with configurable latency, failures,
// lost answers, duplicate notices and payments, amount mismatches and daily statements. The
// fate of each request is drawn from --seed and its order_no, so a run can be repeated.
//
//	go run ./cmd/fakechannel --secret-file secret --seed 7 --fail-rate 0.1 --statement-dir stmts
//
// The shared HMAC secret is read from --secret-file (never from a flag value); without one a
// demo secret is used, with a warning. SIGINT or SIGTERM stops it gracefully: pending
// notices are flushed for up to --shutdown-timeout and the statements are written.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/internal/logging"
)

// demoSecret signs notices when no --secret-file is given: for a demo only.
const demoSecret = fake.DemoSecret

// Exit status: 0 stopped by SIGINT or SIGTERM (or --help), 1 failed, 2 bad flags.
func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.As(err, &usage):
		slog.Error("fakechannel: bad flags (fakechannel --help lists them)", "err", usage.err)
		os.Exit(2)
	default:
		slog.Error("fakechannel failed", "err", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

type options struct {
	cfg             fake.Config
	addr            string
	secretFile      string
	logFormat       string
	logLevel        string
	shutdownTimeout time.Duration
}

// parseFlags reads the flags; --help prints the usage to out.
func parseFlags(args []string, out io.Writer) (options, error) {
	var o options
	c := &o.cfg
	fs := flag.NewFlagSet("fakechannel", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // a bad flag is logged, not printed with the usage
	fs.Usage = func() {
		fs.SetOutput(out)
		fmt.Fprintln(out, "usage: fakechannel [flags]")
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:7071", "listen address (port 0 picks one; ledgerd has 7070)")
	fs.StringVar(&o.secretFile, "secret-file", "", "file holding the HMAC secret shared with the ledger (default: a demo secret, with a warning)")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of every random choice (with each request's order_no)")
	fs.DurationVar(&c.Latency, "latency", 100*time.Millisecond, "processing delay before a request's outcome")
	fs.DurationVar(&c.Jitter, "jitter", 0, "up to this much more latency, drawn per request")
	fs.Float64Var(&c.FailRate, "fail-rate", 0, "fraction of requests that end failed")
	fs.Float64Var(&c.TimeoutRate, "timeout-rate", 0, "fraction of new requests whose answer is held back (see --timeout-hold) or whose connection is dropped; the request is still processed")
	fs.DurationVar(&c.TimeoutHold, "timeout-hold", fake.TimeoutHoldDefault, "how long a held-back answer waits")
	fs.DurationVar(&c.CallbackDelay, "callback-delay", 0, "extra delay before a notice is sent")
	fs.Float64Var(&c.DupCallbackRate, "dup-callback-rate", 0, "fraction of requests whose notice is sent twice")
	fs.Float64Var(&c.DupPayRate, "dup-pay-rate", 0, "fraction of succeeded pays paid a second time (a second succeeded notice, another txn)")
	fs.Float64Var(&c.MismatchRate, "mismatch-rate", 0, "fraction of succeeded pays whose amount differs from the one asked")
	fs.Float64Var(&c.StatementDropRate, "statement-drop-rate", 0, "fraction of clean succeeded txns the statement leaves out (the ledger finds them short)")
	fs.Float64Var(&c.StatementAmountRate, "statement-amount-rate", 0, "fraction of clean succeeded txns whose statement line shows another amount")
	fs.Float64Var(&c.StatementStatusRate, "statement-status-rate", 0, "fraction of clean succeeded txns whose statement line says failed")
	fs.Float64Var(&c.StatementLongRate, "statement-long-rate", 0, "fraction of clean succeeded txns followed on the statement by a line of a payment no one asked for (long)")
	fs.StringVar(&c.StatementDir, "statement-dir", "", "where daily statements (statement-YYYY-MM-DD.csv) go; empty: none")
	fs.DurationVar(&c.StatementEvery, "statement-every", 0, "write the changed statements this often (0: on demand and at shutdown)")
	fs.BoolVar(&c.Sync, "sync", false, "answer succeeded/failed synchronously, without notices")
	fs.IntVar(&c.MaxRecords, "max-records", fake.MaxRecordsDefault, "requests held; beyond, new ones are answered 503")
	fs.IntVar(&c.MaxPendingCallbacks, "max-pending-callbacks", fake.MaxPendingCallbacksDefault, "notices waiting; beyond, notices are dropped")
	fs.IntVar(&c.NoticeBatch, "notice-batch", 64, fmt.Sprintf("notices to one notify URL posted together, as a JSON array (1..%d; 1: one notice per post)", channel.MaxNoticesPerPost))
	fs.DurationVar(&c.NoticeLinger, "notice-linger", fake.NoticeLingerServed, "how long a notice waits for others to the same notify URL to share its post (with --notice-batch above 1; 0: posted as soon as a poster is free)")
	fs.IntVar(&c.CallbackAttempts, "callback-attempts", fake.CallbackAttemptsDefault, "posts of one notice before it is abandoned")
	fs.DurationVar(&c.CallbackBackoff, "callback-backoff", fake.CallbackBackoffDefault, "wait before a notice's second post, doubling after")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long shutdown waits for outcomes and notices still due")
	fs.StringVar(&o.logFormat, "log-format", logging.FormatText, "log format: text or json (every line, flag errors too)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	format, level := logging.FlagValues(args)
	log, err := logging.Setup(stderr, format, level)
	if err != nil {
		_, _ = logging.Setup(stderr, logging.FormatText, "info")
		return usageError{err}
	}
	o, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	if err != nil {
		return usageError{err}
	}
	o.cfg.Logger = log
	if o.cfg.Secret, err = readSecret(o.secretFile, log); err != nil {
		return err
	}
	srv, err := fake.Start(o.addr, o.cfg)
	if err != nil {
		return err
	}
	log.Info("fake channel ready", "url", srv.URL(), "seed", o.cfg.Seed, "sync", o.cfg.Sync)
	<-ctx.Done()
	log.Info("shutting down", "timeout", o.shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	return srv.Close(sctx)
}

// readSecret reads the shared secret from path, or warns and returns the demo secret.
func readSecret(path string, log *slog.Logger) ([]byte, error) {
	if path == "" {
		log.Warn("NO --secret-file: SIGNING NOTICES WITH THE PUBLIC DEMO SECRET; never use this outside a demo",
			"demo_secret", demoSecret)
		return []byte(demoSecret), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--secret-file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, fmt.Errorf("--secret-file %s is empty", path)
	}
	return b, nil
}
