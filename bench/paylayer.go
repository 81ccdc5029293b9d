package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/gateway"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// paymentCaller is the part of ledger.v1.PaymentService the bench calls: over gRPC, or the
// service's handlers called directly (in process: the proto conversions without gRPC).
type paymentCaller interface {
	createPayments(ctx context.Context, rs []*ledgerv1.PaymentRequest) ([]*ledgerv1.CreatePaymentsResult, error)
	setDegraded(ctx context.Context, name string, degraded bool) error
}

type grpcPayments struct{ c ledgerv1.PaymentServiceClient }

func (g grpcPayments) createPayments(ctx context.Context, rs []*ledgerv1.PaymentRequest) ([]*ledgerv1.CreatePaymentsResult, error) {
	resp, err := g.c.CreatePayments(ctx, &ledgerv1.CreatePaymentsRequest{Requests: rs})
	return resp.GetResults(), err
}

func (g grpcPayments) setDegraded(ctx context.Context, name string, degraded bool) error {
	_, err := g.c.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: name, Degraded: degraded})
	return err
}

type inProcessPayments struct{ s *api.PaymentService }

func (p inProcessPayments) createPayments(ctx context.Context, rs []*ledgerv1.PaymentRequest) ([]*ledgerv1.CreatePaymentsResult, error) {
	resp, err := p.s.CreatePayments(ctx, &ledgerv1.CreatePaymentsRequest{Requests: rs})
	return resp.GetResults(), err
}

func (p inProcessPayments) setDegraded(ctx context.Context, name string, degraded bool) error {
	_, err := p.s.SetChannelDegraded(ctx, &ledgerv1.SetChannelDegradedRequest{Channel: name, Degraded: degraded})
	return err
}

// payLayer is the payment layer a run drives: embedded (the payment actors on the embedded
// store, a simulated channel and the notify endpoint on loopback, as ledgerd --fake-channel
// runs them) or ledgerd's, through its PaymentService and its metrics endpoint.
type payLayer struct {
	caller      paymentCaller
	engine      *payments.Engine     // embedded
	registry    *prometheus.Registry // embedded: the payment actors' metrics
	fake        *fake.Server         // embedded
	notify      *http.Server         // embedded
	conn        *grpc.ClientConn     // the PaymentService connection, when over gRPC
	metricsAddr string               // remote: ledgerd's metrics address
}

// Limits of the embedded simulated channel that the bench sets above fake's defaults: a run
// sends more requests than fake.MaxRecordsDefault holds, and its notices come faster than
// fake.MaxPendingCallbacksDefault allows to wait.
const (
	fakeRecordsMin          = 1_000_000
	fakePendingCallbacksMax = 1_000_000
)

// startPayLayer starts the payment actors on the embedded ledger.
func startPayLayer(c *Config, e *embedded) (*payLayer, error) {
	p := &payLayer{registry: prometheus.NewRegistry()}
	setup, err := payment.NewSetup(rules.Default(), payment.DefaultCodes, []string{c.Channel})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	secret := []byte(fake.DemoSecret)
	quiet := slog.New(slog.NewTextHandler(discard{}, nil))
	p.fake, err = fake.Start("127.0.0.1:0", fake.Config{Secret: secret, Seed: c.Seed, Latency: c.ChannelLatency,
		MaxRecords: max(fakeRecordsMin, 2*(c.Orders+c.Accounts)), MaxPendingCallbacks: fakePendingCallbacksMax,
		CallbackConcurrency: c.CallbackConcurrency, NoticeBatch: c.NoticeBatch, NoticeLinger: c.NoticeLinger, Logger: quiet})
	if err != nil {
		_ = lis.Close()
		return nil, err
	}
	// As ledgerd builds its channel clients: one http.Client with the channel timeout.
	hc := &http.Client{Timeout: c.ChannelTimeout, Transport: channel.NewHTTPTransport(c.ChannelInFlight)}
	notifyURL := "http://" + lis.Addr().String() + payments.NotifyPath + c.Channel
	clients := map[string]channel.Client{c.Channel: channel.NewHTTPClient(p.fake.URL(), notifyURL, hc)}
	gcfg := gateway.Config{Timeout: c.ChannelTimeout, RateLimit: rate.Limit(c.ChannelRate),
		Burst: max(1, int(c.ChannelRate/10)), MaxInFlight: c.ChannelInFlight, Batch: c.ChannelBatch, Linger: c.ChannelLinger,
		QueueLimit: 16 * c.ChannelInFlight}
	metrics := payments.NewMetrics()
	p.engine, err = payments.Start(e.store, e.ledger, payments.Config{Events: e.seq, Setup: setup, Clients: clients, Gateway: gcfg,
		Ledgers: []uint32{c.ledgerID()}, Metrics: metrics, Logger: slog.Default()})
	if err != nil {
		_ = lis.Close()
		return nil, errors.Join(err, p.close())
	}
	if err := metrics.Register(p.registry, p.engine); err != nil {
		_ = lis.Close()
		return nil, errors.Join(err, p.close())
	}
	p.notify = &http.Server{Handler: p.engine.NotifyHandler(map[string][]byte{c.Channel: secret}),
		ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.notify.Serve(lis) }()
	return p, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// dialPayments makes p call PaymentService at addr over gRPC.
func (p *payLayer) dialPayments(addr string, sec client.Security) error {
	opts, err := sec.DialOptions()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	p.conn, p.caller = conn, grpcPayments{c: ledgerv1.NewPaymentServiceClient(conn)}
	return nil
}

// killChannel makes the simulated channel unreachable: every call fails, so that the
// gateway's circuit opens.
func (p *payLayer) killChannel() error {
	if p.fake == nil {
		return errors.New("bench: --channel-down dead needs the embedded ledger")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := p.fake.Close(ctx)
	p.fake = nil
	return err
}

// orderCounts are the payment layer's order counters.
type orderCounts struct {
	succeeded, failed float64            // ledger_payment_orders_total by state
	failedBy          map[string]float64 // failed, by result
	inFlight          float64            // ledger_payment_orders_in_flight
}

func (o orderCounts) final() int64 { return int64(o.succeeded + o.failed) }

// counts reads the final orders (the counter ledger_payment_orders_total) and the orders in
// flight: from the embedded registry, or scraped from ledgerd's metrics endpoint.
func (p *payLayer) counts() (orderCounts, error) {
	var oc orderCounts
	if p.registry == nil {
		return scrapeOrders(p.metricsAddr)
	}
	mfs, err := p.registry.Gather()
	if err != nil {
		return oc, err
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ledger_payment_orders_total":
			for _, m := range mf.GetMetric() {
				var state, result string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "state":
						state = l.GetValue()
					case "result":
						result = l.GetValue()
					}
				}
				oc.add(state, result, m.GetCounter().GetValue())
			}
		case "ledger_payment_orders_in_flight":
			for _, m := range mf.GetMetric() {
				oc.inFlight += m.GetGauge().GetValue()
			}
		}
	}
	return oc, nil
}

func (o *orderCounts) add(state, result string, v float64) {
	if state == payment.Succeeded.String() {
		o.succeeded += v
		return
	}
	o.failed += v
	if o.failedBy == nil {
		o.failedBy = map[string]float64{}
	}
	o.failedBy[result] += v
}

// scrapeOrders reads the order counters from ledgerd's /metrics.
func scrapeOrders(addr string) (orderCounts, error) {
	var oc orderCounts
	err := scrapeMetrics(addr, func(name string, v float64) {
		switch {
		case strings.HasPrefix(name, "ledger_payment_orders_total{"):
			label := func(l string) string {
				_, after, _ := strings.Cut(name, l+`="`)
				v, _, _ := strings.Cut(after, `"`)
				return v
			}
			oc.add(label("state"), label("result"), v)
		case name == "ledger_payment_orders_in_flight":
			oc.inFlight = v
		}
	})
	return oc, err
}

func (p *payLayer) close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.conn != nil {
		errs = append(errs, p.conn.Close())
	}
	// The simulated channel first, while the notify endpoint and the engine still take the
	// notices it has due (a duplicate's second post, a retry after a busy answer), for a
	// second at most: what it still holds then is the simulation's, not the ledger's (the
	// run checked its orders already), and is reported, not failed.
	if p.fake != nil {
		fctx, fcancel := context.WithTimeout(context.Background(), time.Second)
		if err := p.fake.Close(fctx); err != nil {
			fmt.Fprintf(os.Stderr, "bench: the simulated channel did not finish its notices: %v\n", err)
		}
		fcancel()
	}
	if p.notify != nil {
		// Closed, not shut down gracefully: the channel is gone, and a post of it still open
		// (abandoned mid-way) would hold a graceful shutdown to its deadline.
		if err := p.notify.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bench: the notify endpoint: %w", err))
		}
	}
	if p.engine != nil {
		if err := p.engine.Stop(ctx); err != nil && !errors.Is(err, gateway.ErrAbandoned) {
			errs = append(errs, fmt.Errorf("bench: the payment engine: %w", err))
		}
	}
	return errors.Join(errs...)
}
