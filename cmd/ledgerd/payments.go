package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	"github.com/ledgercore/ledger/storage"
)

// paymentFlags configure the payment layer.
type paymentFlags struct {
	rulesFile      string
	channels       pairs // name=base URL of an external channel
	secrets        pairs // name=file holding its HMAC secret
	fakeChannels   list  // names of channels simulated in process
	fakeLatency    time.Duration
	fakeFailRate   float64
	fakeSeed       uint64
	notifyListen   string
	notifyURL      string
	ledgers        pairs // ledger=currency
	channelTimeout time.Duration
	channelRate    float64
	channelFlight  int
	channelBatch   int
	channelLinger  time.Duration
}

// pairs is a repeatable (or comma-separated) NAME=VALUE flag.
type pairs map[string]string

func (p pairs) String() string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, k+"="+p[k])
	}
	return strings.Join(out, ",")
}

func (p pairs) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("want NAME=VALUE, not %q", kv)
		}
		p[k] = v
	}
	return nil
}

// list is a repeatable (or comma-separated) flag of names.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(s string) error {
	for _, name := range strings.Split(s, ",") {
		if name == "" {
			return errors.New("empty name")
		}
		*l = append(*l, name)
	}
	return nil
}

func (p *paymentFlags) register(fs *flag.FlagSet) {
	p.channels, p.secrets, p.ledgers = pairs{}, pairs{}, pairs{}
	fs.StringVar(&p.rulesFile, "rules", "", "chart of accounts and transaction codes (YAML; default: the built-in chart, which 'ledgerctl chart' prints)")
	fs.Var(p.channels, "channel", "an external payment channel, `NAME=URL` of its HTTP API (repeatable)")
	fs.Var(p.secrets, "channel-secret", "`NAME=FILE`: the file holding the HMAC secret (at least 16 bytes) channel NAME signs its callbacks and daily statements with; required for every --channel (repeatable)")
	fs.Var(&p.fakeChannels, "fake-channel", "start a simulated channel `NAME` in process, for demos (repeatable; its secret is the demo secret unless --channel-secret names one)")
	fs.DurationVar(&p.fakeLatency, "fake-latency", 20*time.Millisecond, "how long a simulated channel takes to decide a request")
	fs.Float64Var(&p.fakeFailRate, "fake-fail-rate", 0, "fraction of requests a simulated channel fails")
	fs.Uint64Var(&p.fakeSeed, "fake-seed", 1, "seed of the simulated channels' fates")
	fs.StringVar(&p.notifyListen, "notify-listen", "127.0.0.1:7072", "HTTP address of the channels' callback endpoint "+payments.NotifyPath+"NAME")
	fs.StringVar(&p.notifyURL, "notify-url", "", "the callback endpoint's base URL as channels reach it (default: http://<--notify-listen>)")
	fs.Var(p.ledgers, "payment-ledger", "`LEDGER=CURRENCY`: a ledger payments use and its ISO 4217 currency (repeatable; default 1=CNY, replaced when given)")
	fs.DurationVar(&p.channelTimeout, "channel-timeout", 5*time.Second, "how long one call to a channel may take before its outcome is unknown")
	fs.Float64Var(&p.channelRate, "channel-rate", 10000, "requests per second sent to one channel")
	fs.IntVar(&p.channelFlight, "channel-in-flight", 256, "requests at one channel at once")
	fs.IntVar(&p.channelBatch, "channel-batch", 64, fmt.Sprintf("requests to one channel sent in one exchange when several are ready (1..%d; 1: one request per exchange); exchanges at once: --channel-in-flight / this", channel.MaxBatchItems))
	fs.DurationVar(&p.channelLinger, "channel-linger", gateway.LingerServer, fmt.Sprintf("how long a request to a channel waits for others to share its exchange while few exchanges are out (0: it goes at once; at most %v)", gateway.LingerMax))
}

func (p *paymentFlags) check() error {
	if len(p.ledgers) == 0 {
		p.ledgers["1"] = "CNY"
	}
	for name := range p.channels {
		if slices.Contains(p.fakeChannels, name) {
			return fmt.Errorf("--channel %s and --fake-channel %s: a channel is external or simulated, not both", name, name)
		}
	}
	for name := range p.secrets {
		if _, ok := p.channels[name]; !ok && !slices.Contains(p.fakeChannels, name) {
			return fmt.Errorf("--channel-secret %s: no channel of that name", name)
		}
	}
	for name := range p.channels {
		if _, ok := p.secrets[name]; !ok {
			// Its callbacks would be verified with the public demo secret: anyone could forge
			// a success and be credited money never collected.
			return fmt.Errorf("--channel %s needs --channel-secret %s=FILE", name, name)
		}
	}
	for l, cur := range p.ledgers {
		n, err := strconv.ParseUint(l, 10, 32)
		if err != nil || n == 0 || n > payment.LedgerIDMax || len(cur) != 3 || strings.ToUpper(cur) != cur {
			return fmt.Errorf("--payment-ledger %s=%s: want a ledger from 1 to %d and a currency like CNY", l, cur, payment.LedgerIDMax)
		}
	}
	if p.channelTimeout <= 0 || p.channelRate <= 0 || p.channelFlight < 1 {
		return errors.New("--channel-timeout, --channel-rate and --channel-in-flight must be positive")
	}
	if p.channelBatch < 1 || p.channelBatch > channel.MaxBatchItems {
		return fmt.Errorf("--channel-batch must be 1 to %d, not %d", channel.MaxBatchItems, p.channelBatch)
	}
	if p.channelLinger < 0 || p.channelLinger > gateway.LingerMax {
		return fmt.Errorf("--channel-linger must be 0 to %v, not %v", gateway.LingerMax, p.channelLinger)
	}
	if p.fakeFailRate < 0 || p.fakeFailRate > 1 {
		return fmt.Errorf("--fake-fail-rate must be 0 to 1, not %v", p.fakeFailRate)
	}
	return nil
}

// fakeCallbacks is how many callbacks an in-process simulated channel posts at once: enough
// that a load test's callbacks do not queue past its bound and get dropped (the orders would
// then wait for their query-backs).
const fakeCallbacks = 64

// fakeNoticeBatch is how many notices an in-process simulated channel posts together.
const fakeNoticeBatch = 64

// paymentLayer is the running payment layer: its actors, its callback endpoint and the
// simulated channels.
type paymentLayer struct {
	engine  *payments.Engine
	notify  *http.Server
	fakes   []*fake.Server
	addr    string
	chart   *rules.Chart // the rules the payment layer posts by, and the trial balance sums by
	setup   *payment.Setup
	stopped bool
}

// paymentConfig is what the payment layer reads from files and flags: read before the store
// opens, so that a mistake in a rules file or a secret fails the start before it creates
// anything.
type paymentConfig struct {
	chart   *rules.Chart
	setup   *payment.Setup
	names   []string          // the channels, external then simulated
	secrets map[string][]byte // by channel
	ledgers []uint32
	// notifyTLS serves the notify endpoint over TLS (nil: plaintext); notifyAuth wraps its
	// handler (security.notifyHandler; nil: none).
	notifyTLS  *tls.Config
	notifyAuth func(http.Handler) http.Handler
}

func loadPayments(p *paymentFlags) (*paymentConfig, error) {
	pc := &paymentConfig{chart: rules.Default(), secrets: map[string][]byte{}}
	if p.rulesFile != "" {
		data, err := os.ReadFile(p.rulesFile)
		if err != nil {
			return nil, err
		}
		if pc.chart, err = rules.Load(p.rulesFile, data); err != nil {
			return nil, err
		}
	}
	pc.names = append(slices.Sorted(maps.Keys(p.channels)), p.fakeChannels...)
	currencies := map[uint32]string{}
	for ls, cur := range p.ledgers {
		n, _ := strconv.ParseUint(ls, 10, 32)
		currencies[uint32(n)] = cur
		pc.ledgers = append(pc.ledgers, uint32(n))
	}
	slices.Sort(pc.ledgers)
	var err error
	if pc.setup, err = payment.NewSetup(pc.chart, payment.DefaultCodes, pc.names); err != nil {
		return nil, err
	}
	pc.setup.Currencies = currencies
	for _, name := range pc.names {
		file, ok := p.secrets[name]
		if !ok {
			slog.Warn("simulated payment channel uses the public demo secret; pass --channel-secret to use another", "channel", name)
			pc.secrets[name] = []byte(fake.DemoSecret)
			continue
		}
		secret, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		secret = []byte(strings.TrimSpace(string(secret)))
		if len(secret) < 16 {
			return nil, fmt.Errorf("--channel-secret %s: the secret in %s is shorter than 16 bytes", name, file)
		}
		pc.secrets[name] = secret
	}
	return pc, nil
}

// startPayments starts the payment layer on the recovered ledger, serving the channels'
// callbacks on lis (bound before the store opened).
func startPayments(p *paymentFlags, pc *paymentConfig, lis net.Listener, store *storage.Store, l *actors.Ledger, m *api.Metrics,
	sink actors.EventSink) (*paymentLayer, error) {
	base := p.notifyURL
	if base == "" {
		base = "http://" + lis.Addr().String()
		if pc.notifyTLS != nil {
			base = "https://" + lis.Addr().String()
		}
	}
	if pc.notifyTLS != nil {
		lis = tls.NewListener(lis, pc.notifyTLS)
	}
	pl := &paymentLayer{addr: lis.Addr().String(), chart: pc.chart, setup: pc.setup}
	clients := map[string]channel.Client{}
	hc := &http.Client{Timeout: p.channelTimeout, Transport: channel.NewHTTPTransport(p.channelFlight)}
	for _, name := range pc.names {
		url := p.channels[name]
		if url == "" {
			f, err := fake.Start("127.0.0.1:0", fake.Config{Secret: pc.secrets[name], Seed: p.fakeSeed, Latency: p.fakeLatency,
				FailRate: p.fakeFailRate, CallbackConcurrency: fakeCallbacks, MaxPendingCallbacks: 16 * fakeCallbacks * 100, NoticeBatch: fakeNoticeBatch,
				NoticeLinger: fake.NoticeLingerServed, Logger: slog.Default().With("fake_channel", name)})
			if err != nil {
				pl.close()
				return nil, err
			}
			pl.fakes = append(pl.fakes, f)
			url = f.URL()
			slog.Warn("simulated payment channel started: no money moves", "channel", name, "url", url)
		}
		clients[name] = channel.NewHTTPClient(url, base+payments.NotifyPath+name, hc)
	}
	gcfg := gateway.Config{Timeout: p.channelTimeout, RateLimit: rate.Limit(p.channelRate), Burst: max(1, int(p.channelRate/10)),
		MaxInFlight: p.channelFlight, Batch: p.channelBatch, Linger: p.channelLinger, QueueLimit: 16 * p.channelFlight,
		Metrics: gateway.NewCollector()}
	m.Registry.MustRegister(gcfg.Metrics)
	pm := payments.NewMetrics()
	var err error
	pl.engine, err = payments.Start(store, l, payments.Config{Setup: pc.setup, Clients: clients, Secrets: pc.secrets, Gateway: gcfg,
		Ledgers: pc.ledgers, Metrics: pm, Events: sink})
	if err != nil {
		pl.close()
		return nil, err
	}
	if err := pm.Register(m.Registry, pl.engine); err != nil {
		_ = pl.engine.Stop(context.Background())
		pl.close()
		return nil, err
	}
	handler := pl.engine.NotifyHandler(pc.secrets)
	if pc.notifyAuth != nil {
		handler = pc.notifyAuth(handler)
	}
	pl.notify = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() {
		if err := pl.notify.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("notify server", "err", err)
		}
	}()
	return pl, nil
}

// close closes the simulated channels.
func (pl *paymentLayer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, f := range pl.fakes {
		_ = f.Close(ctx)
	}
}

// stop stops taking callbacks, then the payment actors (what they decided goes out), then
// the simulated channels. The ledger stops after it. A second stop does nothing.
func (pl *paymentLayer) stop(ctx context.Context) {
	if pl.stopped {
		return
	}
	pl.stopped = true
	if err := pl.notify.Shutdown(ctx); err != nil {
		slog.Warn("notify server shutdown", "err", err)
	}
	if err := pl.engine.Stop(ctx); err != nil {
		slog.Warn("payment actors stopped with calls in flight; their orders query after a restart", "err", err)
	}
	pl.close()
}
