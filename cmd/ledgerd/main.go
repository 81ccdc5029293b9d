// Command ledgerd is the ledger server: gRPC on --listen, the admin service on --admin-listen
// (loopback), Prometheus metrics and /healthz on --metrics-listen, data in Pebble under
// --data-dir.
//
// Exit status: 0 stopped cleanly by SIGTERM or SIGINT, whenever it came (during start-up too:
// what had started stops in order and the store closes); 1 failed to start or to serve; 2 bad
// flags; 70 a shard or the event stream stopped on a broken invariant or a storage error
// (restart recovers from the store).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/internal/logging"
	"github.com/ledgercore/ledger/internal/procs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

func main() {
	// The handler is in place before anything starts: a SIGTERM or SIGINT at any point of the
	// start-up (store open, recovery) stops it cleanly instead of killing the process.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	err := run(os.Args[1:], stop)
	var usage usageError
	switch {
	case err == nil:
		slog.Info("ledgerd stopped")
	case errors.Is(err, flag.ErrHelp): // the usage is printed
	case errors.As(err, &usage):
		slog.Error("ledgerd: bad flags (ledgerd --help lists them)", "err", usage.err)
		os.Exit(2)
	default:
		slog.Error("ledgerd failed", "err", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

type config struct {
	dataDir, listen, metricsListen, logFormat, logLevel                     string
	shards, shardRequestsMax, shardEventsMax, hotBufferLegs, pieceTransfers int
	cacheBytes                                                              int64
	backgroundNice, extraProcs, roundsInFlight                              int
	pprof                                                                   bool
	drainTimeout, hotFlushInterval, clockSkewMax                            time.Duration
	payments                                                                paymentFlags
	eventsRetain                                                            uint64
	events                                                                  natsFlags
	recon                                                                   reconFlags
	firstDay                                                                ledger.Day
	eodAt                                                                   string // HH:MM UTC; empty: no schedule
	eodAtMinute                                                             int    // eodAt in minutes past midnight
	eodDrainTimeout                                                         time.Duration
	backupRoot                                                              string
	security                                                                securityFlags
	adminListen                                                             string
	verifyInterval                                                          time.Duration
}

// newFlagSet defines ledgerd's flags into c. It prints nothing: run prints --help's usage to
// stdout, and a bad flag is logged.
func newFlagSet(c *config) *flag.FlagSet {
	fs := flag.NewFlagSet("ledgerd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&c.dataDir, "data-dir", "./data", "directory of the Pebble store (created if missing, once every listener is bound)")
	fs.StringVar(&c.listen, "listen", "127.0.0.1:7070", "gRPC listen address (port 0 picks a free port)")
	fs.StringVar(&c.adminListen, "admin-listen", "127.0.0.1:7073", "gRPC address of the admin service (Verify, TrialBalance, end of day, Backup), apart from --listen; a loopback address only (port 0 picks a free port)")
	fs.DurationVar(&c.verifyInterval, "verify-interval", api.VerifyIntervalDefault, "least time between the starts of two AdminService.Verify calls (0: no limit; one runs at a time whatever it is)")
	fs.StringVar(&c.metricsListen, "metrics-listen", "127.0.0.1:9464", "HTTP address for /metrics and /healthz (empty: off)")
	fs.IntVar(&c.shards, "shards", 0, fmt.Sprintf("number of shard actors, fixed when the store is made (0: the store's own, or %d for a new store)", actors.ShardsDefault))
	fs.IntVar(&c.shardRequestsMax, "shard-requests-max", actors.ShardRequestsMaxDefault,
		"requests one shard admits at once; past it requests fail with RESOURCE_EXHAUSTED")
	fs.IntVar(&c.shardEventsMax, "shard-events-max", actors.ShardEventsMaxDefault,
		"accounts and transfers one shard admits at once; past it requests fail with RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.hotFlushInterval, "hot-flush-interval", actors.HotFlushIntervalDefault,
		"how long a hot account's buffer of inflows from another shard waits before it is sent")
	fs.IntVar(&c.hotBufferLegs, "hot-buffer-legs", actors.HotBufferLegsMaxDefault,
		"inflows a hot account's buffer holds before it is sent at once")
	fs.IntVar(&c.pieceTransfers, "piece-transfers", driver.PieceEventsDefault,
		fmt.Sprintf("a shard runs a request's transfers in pieces of about this many, and seals a round between two when fewer than --rounds-in-flight commit, so that a large request's commit overlaps running it (1 to %d; %d: whole)", ledger.BatchEventsMax, ledger.BatchEventsMax))
	fs.IntVar(&c.roundsInFlight, "rounds-in-flight", driver.RoundsInFlightDefault,
		fmt.Sprintf("sealed rounds a shard commits at once: with 2, a round of --piece-transfers transfers or more is sealed while another commits, and its batch is written while the one before it syncs (1 to %d)", driver.RoundsInFlightMax))
	fs.DurationVar(&c.clockSkewMax, "clock-skew-max", actors.ClockSkewMaxDefault,
		"a step of the wall clock larger than this is not followed but reported (ledger_clock_skew_seconds); restart to take it")
	fs.Int64Var(&c.cacheBytes, "cache-bytes", 64<<20, "Pebble block cache size in bytes")
	fs.IntVar(&c.backgroundNice, "background-nice", storage.BackgroundNiceDefault, "nice value (1-19) of the threads running Pebble's flushes and compactions, so the requests keep the cores; they can starve while anything else keeps every core busy, see docs/OPERATIONS.md (0: the process's priority; Linux only)")
	fs.IntVar(&c.extraProcs, "extra-procs", procs.ExtraDefault, fmt.Sprintf("Go Ps (GOMAXPROCS) beyond the CPUs, so the kernel shares the cores among more threads (0 to %d; none with GOMAXPROCS set in the environment or a cgroup CPU quota)", procs.ExtraMax))
	fs.BoolVar(&c.pprof, "pprof", false, "serve net/http/pprof under /debug/pprof/ on the metrics address")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "how long shutdown waits for requests in flight")
	fs.StringVar(&c.logFormat, "log-format", logging.FormatText, "log format: text or json (every line, flag errors too)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn or error (debug adds Pebble's, Proto.Actor's and gRPC's routine lines)")
	fs.Uint64Var(&c.eventsRetain, "events-retain", events.RetainEventsDefault,
		"events the event stream keeps (the newest; 0: all); a subscriber asking for an older one gets OUT_OF_RANGE")
	c.events.register(fs)
	c.payments.register(fs)
	c.recon.register(fs)
	c.security.register(fs)
	fs.Func("first-day", "the accounting day (YYYY-MM-DD) a store without days starts on (empty: today, UTC); a store with days keeps its own", func(s string) error {
		d, err := ledger.ParseDay(s)
		if err != nil {
			return err
		}
		if !d.Next().Valid() {
			return fmt.Errorf("%v has no next day (the last day is %v)", d, ledger.DayMax)
		}
		c.firstDay = d
		return nil
	})
	fs.StringVar(&c.eodAt, "eod-at", "", "close every accounting day that is due (its calendar end, UTC, has passed), in order, at the start and every day at HH:MM UTC (empty: only on request); a day not archived is logged and tried again at the next run")
	fs.StringVar(&c.backupRoot, "backup-root", "", "where AdminService.Backup (ledgerctl backup NAME) writes copies of the store, NAME under it (made when needed; not inside --data-dir nor holding it; empty: backups off)")
	fs.DurationVar(&c.eodDrainTimeout, "eod-drain-timeout", eod.DrainTimeoutDefault, "how long end of day waits for the day's split legs in flight")
	return fs
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := newFlagSet(&c)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.eodAt != "" {
		m, err := parseEODAt(c.eodAt)
		if err != nil {
			return c, err
		}
		c.eodAtMinute = m
	}
	if c.eodDrainTimeout < time.Second || c.eodDrainTimeout > time.Hour {
		return c, fmt.Errorf("--eod-drain-timeout must be 1s to 1h, not %v", c.eodDrainTimeout)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := checkAdminListen(c.adminListen); err != nil {
		return c, err
	}
	if c.verifyInterval < 0 || c.verifyInterval > 24*time.Hour {
		return c, fmt.Errorf("--verify-interval must be 0 to 24h, not %v", c.verifyInterval)
	}
	if err := storage.CheckBackgroundNice(c.backgroundNice); err != nil {
		return c, fmt.Errorf("--background-nice: %w", err)
	}
	if err := procs.CheckExtra(c.extraProcs); err != nil {
		return c, fmt.Errorf("--extra-procs %w", err)
	}
	if c.shards < 0 || c.shards > 256 {
		return c, fmt.Errorf("--shards must be 1 to 256 (or 0), not %d", c.shards)
	}
	if c.shardRequestsMax < 1 {
		return c, fmt.Errorf("--shard-requests-max must be positive")
	}
	if c.shardEventsMax < ledger.BatchEventsMax {
		return c, fmt.Errorf("--shard-events-max must be at least %d (one full request), not %d",
			ledger.BatchEventsMax, c.shardEventsMax)
	}
	if c.hotFlushInterval < time.Millisecond || c.hotFlushInterval > time.Minute {
		return c, fmt.Errorf("--hot-flush-interval must be 1ms to 1m, not %v", c.hotFlushInterval)
	}
	if c.pieceTransfers < 1 || c.pieceTransfers > ledger.BatchEventsMax {
		return c, fmt.Errorf("--piece-transfers must be 1 to %d, not %d", ledger.BatchEventsMax, c.pieceTransfers)
	}
	if c.roundsInFlight < 1 || c.roundsInFlight > driver.RoundsInFlightMax {
		return c, fmt.Errorf("--rounds-in-flight must be 1 to %d, not %d", driver.RoundsInFlightMax, c.roundsInFlight)
	}
	if c.hotBufferLegs < 1 || c.hotBufferLegs > ledger.OutboxLegsMax {
		return c, fmt.Errorf("--hot-buffer-legs must be 1 to %d, not %d", ledger.OutboxLegsMax, c.hotBufferLegs)
	}
	if c.clockSkewMax < 100*time.Millisecond || c.clockSkewMax > time.Hour {
		return c, fmt.Errorf("--clock-skew-max must be 100ms to 1h, not %v", c.clockSkewMax)
	}
	if c.backupRoot != "" {
		root, err1 := filepath.Abs(c.backupRoot)
		data, err2 := filepath.Abs(c.dataDir)
		if err := errors.Join(err1, err2); err != nil {
			return c, err
		}
		if api.BackupOverlaps(root, data) {
			return c, fmt.Errorf("--backup-root %s and --data-dir %s are one inside the other: a backup must not be inside the store it copies, nor the store among the backups (restore from a copy elsewhere)", c.backupRoot, c.dataDir)
		}
		c.backupRoot = root
	}
	if err := c.recon.check(); err != nil {
		return c, err
	}
	if err := errors.Join(c.security.check(), c.security.checkWith(&c.payments)); err != nil {
		return c, err
	}
	return c, c.payments.check()
}

// configure sets up the log (every line of the process goes through its one handler) and
// reads the flags. For --help it prints the usage to stdout and answers flag.ErrHelp.
func configure(args []string) (config, error) {
	format, level := logging.FlagValues(args)
	if _, err := logging.Setup(os.Stderr, format, level); err != nil {
		_, _ = logging.Setup(os.Stderr, logging.FormatText, "info")
		return config{}, usageError{err}
	}
	c, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fs := newFlagSet(&config{})
		fs.SetOutput(os.Stdout)
		fmt.Fprintln(os.Stdout, "usage: ledgerd [flags]")
		fs.PrintDefaults()
		return c, err
	}
	if err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// interrupted reports a SIGTERM or SIGINT that came during start-up, after step: run then
// returns, and what has started stops in order (its deferred calls), the store last.
func interrupted(stop <-chan os.Signal, step string) bool {
	select {
	case s := <-stop:
		slog.Info("signal during start-up: stopping before serving", "signal", s.String(), "after", step)
		return true
	default:
		return false
	}
}

// checkAdminListen refuses an --admin-listen address that is not loopback, with or without
// TLS and tokens: the admin service (Verify, end of day, backups, the whole-store scans) is
// reached from ledgerd's host only; with --auth-tokens it also takes the operator's
// credentials, as --listen's services take theirs.
func checkAdminListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--admin-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--admin-listen %q is not a loopback address (127.0.0.1, ::1 or localhost): the admin service is reached from ledgerd's host only", addr)
}

// listeners are every address ledgerd serves, bound before the store is opened: a start that
// fails on a port taken creates no store.
type listeners struct {
	grpc, admin, metrics, notify net.Listener // metrics: nil when --metrics-listen is empty
}

func listen(c config) (*listeners, error) {
	var ls listeners
	var err error
	if ls.grpc, err = net.Listen("tcp", c.listen); err != nil {
		return nil, fmt.Errorf("--listen: %w", err)
	}
	if ls.admin, err = net.Listen("tcp", c.adminListen); err != nil {
		ls.close()
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	if c.metricsListen != "" {
		if ls.metrics, err = net.Listen("tcp", c.metricsListen); err != nil {
			ls.close()
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
	}
	if ls.notify, err = net.Listen("tcp", c.payments.notifyListen); err != nil {
		ls.close()
		return nil, fmt.Errorf("--notify-listen: %w", err)
	}
	return &ls, nil
}

// close closes the listeners; those a server took over are closed already (a second close
// only errs).
func (ls *listeners) close() {
	for _, l := range []net.Listener{ls.grpc, ls.admin, ls.metrics, ls.notify} {
		if l != nil {
			_ = l.Close()
		}
	}
}

// metricsAddr is the bound metrics address, or "" when off.
func (ls *listeners) metricsAddr() string {
	if ls.metrics == nil {
		return ""
	}
	return ls.metrics.Addr().String()
}

// openStore opens the store in --data-dir, making it (with the default shards) if it is new.
func openStore(c config) (*storage.Store, error) {
	opts := storage.Options{Shards: uint32(c.shards), CacheBytes: c.cacheBytes, BackgroundNice: c.backgroundNice}
	store, err := storage.Open(c.dataDir, opts)
	if errors.Is(err, storage.ErrNoShardCount) {
		opts.Shards = actors.ShardsDefault
		store, err = storage.Open(c.dataDir, opts)
	}
	if errors.Is(err, storage.ErrLocked) {
		return nil, fmt.Errorf("%w: is another ledgerd running on it? stop it, or give this one another --data-dir", err)
	}
	return store, err
}

func run(args []string, stop <-chan os.Signal) error {
	c, err := configure(args)
	if err != nil {
		return err
	}
	gomaxprocs, why := procs.Extra(c.extraProcs)
	slog.Info("ledgerd starting", "data_dir", c.dataDir, "pid", os.Getpid(),
		"gomaxprocs", gomaxprocs, "gomaxprocs_from", why, "background_nice", c.backgroundNice)
	pc, err := loadPayments(&c.payments)
	if err != nil {
		return err
	}
	sec, err := loadSecurity(c.security)
	if err != nil {
		return err
	}
	if err := checkExposure(c, net.DefaultResolver.LookupIPAddr); err != nil {
		return usageError{err}
	}
	pc.notifyTLS, pc.notifyAuth = sec.tls, sec.notifyHandler
	lis, err := listen(c)
	if err != nil {
		return err
	}
	defer lis.close()
	if interrupted(stop, "listeners bound") {
		return nil
	}
	start := time.Now()
	store, err := openStore(c)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			slog.Error("close store", "err", err)
		}
	}()
	if interrupted(stop, "store opened") {
		return nil
	}
	metrics := api.NewMetrics()
	sec.count(metrics)
	seq, err := events.Start(store, events.Config{RetainEvents: c.eventsRetain, HoldRetention: c.events.url != "", Fatal: func(err error) {
		slog.Error("ledger stopped: the event stream failed; restart recovers from storage", "err", err)
		os.Exit(70)
	}})
	if err != nil {
		return err
	}
	defer seq.Stop() // after the writers (deferred calls run last first)
	metrics.WatchEvents(seq)
	l, err := actors.Start(store, actors.Config{Events: seq, Shards: store.Shards(), ShardRequestsMax: c.shardRequestsMax, ShardEventsMax: c.shardEventsMax,
		CommitSeconds: metrics.CommitSeconds, CommitPostings: metrics.CommitPostings, HotFlushLegs: metrics.HotFlushLegs,
		HotFlushInterval: c.hotFlushInterval, HotBufferLegsMax: c.hotBufferLegs, PieceEvents: c.pieceTransfers, RoundsInFlight: c.roundsInFlight, ClockSkewMax: c.clockSkewMax,
		FirstDay: c.firstDay})
	if err != nil {
		return err
	}
	defer l.Stop()
	metrics.WatchLedger(l)
	if interrupted(stop, "ledger recovered") {
		return nil
	}
	pl, err := startPayments(&c.payments, pc, lis.notify, store, l, metrics, seq)
	if err != nil {
		return err
	}
	defer pl.stop(context.Background()) // before the ledger stops; at once if stopped already
	pub, err := startPublisher(c.events, seq, metrics)
	if err != nil {
		return err
	}
	defer pub.stop()
	rec, err := startRecon(c.recon, seq, store, pl, metrics)
	if err != nil {
		return err
	}
	defer rec.stop() // before the sequencer stops (deferred calls run last first)
	if interrupted(stop, "payments recovered") {
		return nil
	}
	runner := eod.NewRunner(l, store, eod.Config{Chart: pl.chart, DrainTimeout: c.eodDrainTimeout})
	metrics.WatchEndOfDay(runner)
	scheduleCtx, stopSchedule := context.WithCancel(context.Background())
	defer stopSchedule()
	if c.eodAt != "" {
		go scheduleEndOfDay(scheduleCtx, runner, c.eodAtMinute)
	}
	svc := api.NewService(l, metrics, api.WithChart(pl.chart), api.WithEvents(seq), api.WithEndOfDay(runner),
		api.WithBackups(c.backupRoot, c.dataDir, metrics.Registry), api.WithCurrencies(pl.setup.Currencies),
		api.WithVerifyInterval(c.verifyInterval))
	srv, health := api.NewServer(svc, sec.grpcOptions()...)
	api.RegisterPayments(srv, api.Payments(pl.engine), metrics, api.WithOrderCurrency(pl.setup.Currency))
	adminSrv, adminHealth := api.NewAdminServer(svc, sec.grpcOptions()...) // the operator role when --auth-tokens
	httpSrv := serveMetrics(c, lis.metrics, metrics, health)
	health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	health.SetServingStatus("ledger.v1.LedgerService", healthpb.HealthCheckResponse_SERVING)
	health.SetServingStatus("ledger.v1.PaymentService", healthpb.HealthCheckResponse_SERVING)
	adminHealth.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	adminHealth.SetServingStatus("ledger.v1.AdminService", healthpb.HealthCheckResponse_SERVING)
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(lis.grpc) }()
	go func() { serveErr <- adminSrv.Serve(lis.admin) }()
	slog.Info("ledgerd serving", "grpc", lis.grpc.Addr().String(), "admin", lis.admin.Addr().String(), "metrics", lis.metricsAddr(),
		"notify", pl.addr, "data_dir", c.dataDir, "shards", store.Shards(), "recovered_in", time.Since(start).Round(time.Millisecond))
	select {
	case s := <-stop:
		slog.Info("shutting down", "signal", s.String())
	case err := <-serveErr:
		return fmt.Errorf("grpc serve: %w", err)
	}
	health.Shutdown()
	adminHealth.Shutdown()
	stopSchedule()
	seq.EndFollowers()       // subscribers end (UNAVAILABLE) and resume after the restart
	svc.EndTransferStreams() // transfer streams answer what they took, then end (UNAVAILABLE)
	rec.stop()               // before the payment engine its confirmations read stops
	drain(c, []*grpc.Server{srv, adminSrv}, pl, l, httpSrv)
	return nil
}

// drain stops serving: requests in flight on every server finish (for --drain-timeout, then
// they are cancelled), the payment layer stops, then the ledger, then the metrics server.
func drain(c config, srvs []*grpc.Server, pl *paymentLayer, l *actors.Ledger, httpSrv *http.Server) {
	stopped := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for _, srv := range srvs {
			wg.Go(srv.GracefulStop)
		}
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(c.drainTimeout):
		slog.Warn("drain timeout: cancelling requests still in flight", "after", c.drainTimeout)
		for _, srv := range srvs {
			srv.Stop()
		}
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), c.drainTimeout)
	pl.stop(stopCtx)
	cancelStop()
	l.Stop()
	if httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(ctx)
	}
}

type healthChecker interface {
	Check(context.Context, *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error)
}

// serveMetrics serves /metrics and /healthz (and pprof with --pprof) on lis; nil lis: off.
func serveMetrics(c config, lis net.Listener, m *api.Metrics, health healthChecker) *http.Server {
	if lis == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, EnableOpenMetrics: true}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		resp, err := health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if c.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("metrics server", "err", err)
		}
	}()
	return srv
}

// parseEODAt reads --eod-at: exactly HH:MM, 00:00 to 23:59, as minutes past midnight.
func parseEODAt(s string) (int, error) {
	digit := func(i int) (int, bool) { return int(s[i] - '0'), s[i] >= '0' && s[i] <= '9' }
	if len(s) == 5 && s[2] == ':' {
		h1, ok1 := digit(0)
		h2, ok2 := digit(1)
		m1, ok3 := digit(3)
		m2, ok4 := digit(4)
		h, m := h1*10+h2, m1*10+m2
		if ok1 && ok2 && ok3 && ok4 && h < 24 && m < 60 {
			return h*60 + m, nil
		}
	}
	return 0, fmt.Errorf("--eod-at must be HH:MM (UTC, 00:00 to 23:59), not %q", s)
}

// nextEndOfDay is the first time strictly after now that is minute past midnight, UTC (the
// wall clock's zone and its summer time play no part).
func nextEndOfDay(now time.Time, minute int) time.Time {
	now = now.UTC()
	next := time.Date(now.Year(), now.Month(), now.Day(), 0, minute, 0, 0, time.UTC)
	if !next.After(now) {
		next = next.AddDate(0, 0, 1)
	}
	return next
}

// A scheduled end of day that fails (ErrBusy: an operator's run at that minute; a switch
// timeout; a store error) is tried again after scheduleRetryFirst, the wait doubling up to
// scheduleRetryMax, until a run succeeds or the next --eod-at comes (which runs as usual).
const (
	scheduleRetryFirst = time.Minute
	scheduleRetryMax   = 30 * time.Minute
)

// schedule runs end of day at --eod-at (scheduleEndOfDay).
type schedule struct {
	minute int                                              // past midnight, UTC
	run    func(ctx context.Context) (more bool, err error) // one scheduled end of day; more: capped, days still due
	now    func() time.Time
	after  func(time.Duration) <-chan time.Time
	errors *atomic.Uint64 // failed runs (ledger_eod_schedule_errors_total)
	log    *slog.Logger
}

// scheduleEndOfDay closes every day that is due (runScheduledEndOfDay): at the start,
// catching up the days that ended while ledgerd was down, then every day at minute (past
// midnight, UTC) of the wall clock, and again with backoff after a run that failed. The
// clock decides only when a day is due (its calendar end, UTC, has passed): a posting's
// day is the shard's, never the clock's.
func scheduleEndOfDay(ctx context.Context, r *eod.Runner, minute int) {
	log := slog.Default()
	s := schedule{minute: minute, now: time.Now, after: time.After, errors: &r.Stats.ScheduleErrors, log: log,
		run: func(ctx context.Context) (bool, error) { return runScheduledEndOfDay(ctx, r, log) }}
	s.loop(ctx)
}

// loop runs s.run now, then at each next minute past midnight; a run that fails is retried
// after a backoff (scheduleRetryFirst doubling to scheduleRetryMax), never past the next
// scheduled run, and a run capped with days still due runs again at once, until ctx ends.
func (s *schedule) loop(ctx context.Context) {
	var retry time.Duration
	for {
		more, err := s.run(ctx)
		if ctx.Err() != nil {
			return
		}
		now := s.now()
		at := nextEndOfDay(now, s.minute)
		wait := at.Sub(now)
		if err == nil {
			retry = 0
			if more {
				wait = 0
			}
		} else {
			s.errors.Add(1)
			retry = min(max(2*retry, scheduleRetryFirst), scheduleRetryMax)
			if now.Add(retry).Before(at) {
				wait = retry
				s.log.Error("scheduled end of day failed: trying again", "err", err, "in", retry.String())
			} else {
				retry = 0
				s.log.Error("scheduled end of day failed: trying again at the next scheduled run", "err", err,
					"at", at.Format(time.RFC3339))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.after(wait):
		}
	}
}

// runScheduledEndOfDay is one scheduled end of day: it closes every day that is due, in
// order (eod.Runner.RunDue): the days earlier runs left open (interrupted, drain timed out,
// trial balance failed: run again, recomputed), then each day whose calendar end has
// passed. A day not archived is logged as an error (ledger_eod_last_failure and
// ledger_eod_days_open show it) and tried again at the next scheduled run; it does not stop
// the next day's switch (a day whose trial balance passed waits, logged, for it). An error
// (the run stopped: ledger_eod_due_days shows the days still due) is logged and answered;
// more says the run was capped (eod.Config.CatchUpDaysMax) and days may still be due.
func runScheduledEndOfDay(ctx context.Context, r *eod.Runner, log *slog.Logger) (more bool, err error) {
	rs, err := r.RunDue(ctx, eod.Options{})
	for _, res := range rs {
		switch {
		case res.Archived():
			log.Info("scheduled end of day: closed", "day", res.Day.String(), "outcome", res.Outcome.String(), "steps", res.Steps)
		case res.Outcome == eod.OutcomeTrialPassed:
			log.Warn("scheduled end of day: trial balance passed, the day waits for an earlier day to be archived", "day", res.Day.String(),
				"steps", res.Steps)
		default:
			log.Error("scheduled end of day did not close the day", "day", res.Day.String(), "phase", res.Phase.String(),
				"outcome", res.Outcome.String(), "steps", res.Steps, "stuck", res.Stuck)
		}
	}
	if err != nil {
		log.Error("scheduled end of day", "err", err)
	}
	return err == nil && len(rs) >= r.CatchUpDaysMax() && r.DueDays() > 0, err
}
