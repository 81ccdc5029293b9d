package gateway

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"

	"github.com/ledgercore/ledger/channel"
)

// what a call asked: its op, or a query.
type what uint8

const (
	whatOther what = iota // an op this package does not know
	whatPay
	whatPayout
	whatRefund
	whatQuery
	nWhat
)

var whatNames = [nWhat]string{"other", "pay", "payout", "refund", "query"}

func whatOf(c Call) what {
	if c.Query {
		return whatQuery
	}
	switch c.Request.Op {
	case channel.Pay:
		return whatPay
	case channel.Payout:
		return whatPayout
	case channel.Refund:
		return whatRefund
	}
	return whatOther
}

// The outcome label: the answer's status, unknown or rejected.
const (
	resSucceeded = iota
	resFailed
	resProcessing
	resNotFound
	resUnknown
	resRejected
	nResult
)

var resultNames = [nResult]string{"succeeded", "failed", "processing", "not_found", "unknown", "rejected"}

func resultOf(o Outcome) int {
	switch o.Kind {
	case Rejected:
		return resRejected
	case Unknown:
		return resUnknown
	}
	switch o.Result.Status {
	case channel.Succeeded:
		return resSucceeded
	case channel.Failed:
		return resFailed
	case channel.Processing:
		return resProcessing
	}
	return resNotFound
}

// Why a call was rejected, as a label.
var reasons = [...]struct {
	err  error
	name string
}{
	{ErrCircuitOpen, "circuit_open"}, {ErrDegraded, "degraded"}, {ErrBusy, "busy"},
	{ErrRateLimited, "rate_limited"}, {ErrStopping, "stopping"},
}

const nReason = len(reasons)

// counters are written by the loop (and by rejections outside it) and read by Stats.
type counters struct {
	inFlight, queued atomic.Int64
	outcomes         [nWhat][nResult]atomic.Uint64
	rejections       [nReason]atomic.Uint64
}

func (c *counters) count(w what, o Outcome) {
	c.outcomes[w][resultOf(o)].Add(1)
	if o.Kind == Rejected {
		for i, r := range reasons {
			if errors.Is(o.Err, r.err) {
				c.rejections[i].Add(1)
			}
		}
	}
}

// observer is a latency histogram, or nothing.
type observer struct{ o prometheus.Observer }

func (o observer) observe(d time.Duration) {
	if o.o != nil {
		o.o.Observe(d.Seconds())
	}
}

// CircuitState is the circuit breaker's state; its value is that of the circuit gauge.
type CircuitState int

const (
	CircuitClosed   CircuitState = 0
	CircuitHalfOpen CircuitState = 1
	CircuitOpen     CircuitState = 2
)

func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitHalfOpen:
		return "half-open"
	}
	return "open"
}

// Count names one outcome counter: What is pay, payout, refund (or other) for sent
// requests and query for queries; Result is succeeded, failed, processing, not_found,
// unknown or rejected.
type Count struct{ What, Result string }

// Stats is a snapshot of a gateway's gauges and counters.
type Stats struct {
	Channel    string
	InFlight   int // calls at the channel
	Queued     int // calls waiting for a slot or a rate token
	Circuit    CircuitState
	Degraded   bool
	Outcomes   map[Count]uint64  // outcomes delivered; non-zero counts only
	Rejections map[string]uint64 // rejected calls by reason: circuit_open, degraded, busy, rate_limited, stopping
}

// Stats returns the gateway's gauges and counters. It does not wait for the loop.
func (g *Gateway) Stats() Stats {
	s := Stats{
		Channel:    g.name,
		InFlight:   int(g.stats.inFlight.Load()),
		Queued:     int(g.stats.queued.Load()),
		Circuit:    g.Circuit(),
		Degraded:   g.degraded.Load(),
		Outcomes:   map[Count]uint64{},
		Rejections: map[string]uint64{},
	}
	for w := range nWhat {
		for r := range nResult {
			if n := g.stats.outcomes[w][r].Load(); n > 0 {
				s.Outcomes[Count{whatNames[w], resultNames[r]}] = n
			}
		}
	}
	for i, r := range reasons {
		if n := g.stats.rejections[i].Load(); n > 0 {
			s.Rejections[r.name] = n
		}
	}
	return s
}

// Circuit is the circuit breaker's state now.
func (g *Gateway) Circuit() CircuitState {
	switch g.breaker.State() {
	case gobreaker.StateClosed:
		return CircuitClosed
	case gobreaker.StateHalfOpen:
		return CircuitHalfOpen
	}
	return CircuitOpen
}

// Collector exports the metrics of any number of gateways (Config.Metrics) as one
// prometheus.Collector; register it once per registry. A gateway added under the name of an
// earlier one replaces it.
//
//	ledger_channel_requests_total{channel,op,outcome}  counter: sent requests (not queries) by outcome
//	ledger_channel_queries_total{channel,outcome}      counter: queries by outcome
//	ledger_channel_rejections_total{channel,reason}    counter: rejected calls (requests and queries) by reason
//	ledger_channel_request_seconds{channel,op}         histogram: time at the client of calls that reached it (op "query" for queries)
//	ledger_channel_circuit_state{channel}              gauge: 0 closed, 1 half-open, 2 open
//	ledger_channel_in_flight{channel}                  gauge: calls at the channel
//	ledger_channel_queued{channel}                     gauge: calls waiting in the gateway
//	ledger_channel_degraded{channel}                   gauge: 1 while switched off
//
// outcome is succeeded, failed, processing, not_found (answered), unknown or rejected.
type Collector struct {
	seconds *prometheus.HistogramVec

	mu       sync.Mutex // guards gateways
	gateways map[string]*Gateway
}

var (
	descRequests   = prometheus.NewDesc("ledger_channel_requests_total", "Requests sent through a channel gateway, by op and outcome.", []string{"channel", "op", "outcome"}, nil)
	descQueries    = prometheus.NewDesc("ledger_channel_queries_total", "Status queries through a channel gateway, by outcome.", []string{"channel", "outcome"}, nil)
	descRejections = prometheus.NewDesc("ledger_channel_rejections_total", "Calls a channel gateway rejected without sending them, by reason.", []string{"channel", "reason"}, nil)
	descCircuit    = prometheus.NewDesc("ledger_channel_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"channel"}, nil)
	descInFlight   = prometheus.NewDesc("ledger_channel_in_flight", "Calls at the channel now.", []string{"channel"}, nil)
	descQueued     = prometheus.NewDesc("ledger_channel_queued", "Calls waiting in the gateway for a slot or a rate token.", []string{"channel"}, nil)
	descDegraded   = prometheus.NewDesc("ledger_channel_degraded", "1 while the operator has switched the channel off.", []string{"channel"}, nil)
)

// NewCollector makes an empty collector; gateways join it through Config.Metrics.
func NewCollector() *Collector {
	return &Collector{
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_channel_request_seconds", Help: "Time of a call at the channel client, by op (query for queries).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"channel", "op"}),
		gateways: map[string]*Gateway{},
	}
}

func (c *Collector) add(g *Gateway) {
	for w := range nWhat {
		g.seconds[w] = observer{c.seconds.WithLabelValues(g.name, whatNames[w])}
	}
	c.mu.Lock()
	c.gateways[g.name] = g
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descQueries, descRejections, descCircuit, descInFlight, descQueued, descDegraded} {
		ch <- d
	}
	c.seconds.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	gws := make([]*Gateway, 0, len(c.gateways))
	for _, g := range c.gateways {
		gws = append(gws, g)
	}
	c.mu.Unlock()
	for _, g := range gws {
		name := g.name
		for w := range nWhat {
			for r := range nResult {
				n := g.stats.outcomes[w][r].Load()
				switch {
				case w == whatQuery:
					ch <- prometheus.MustNewConstMetric(descQueries, prometheus.CounterValue, float64(n), name, resultNames[r])
				case w != whatOther || n > 0:
					ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), name, whatNames[w], resultNames[r])
				}
			}
		}
		for i, r := range reasons {
			ch <- prometheus.MustNewConstMetric(descRejections, prometheus.CounterValue, float64(g.stats.rejections[i].Load()), name, r.name)
		}
		degraded := 0.0
		if g.degraded.Load() {
			degraded = 1
		}
		ch <- prometheus.MustNewConstMetric(descCircuit, prometheus.GaugeValue, float64(g.Circuit()), name)
		ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(g.stats.inFlight.Load()), name)
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(g.stats.queued.Load()), name)
		ch <- prometheus.MustNewConstMetric(descDegraded, prometheus.GaugeValue, degraded, name)
	}
	c.seconds.Collect(ch)
}
