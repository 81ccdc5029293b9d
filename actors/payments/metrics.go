package payments

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgercore/ledger/ledger/payment"
)

// Metrics are the payment actors' Prometheus metrics.
type Metrics struct {
	orders     *prometheus.CounterVec
	exceptions *prometheus.CounterVec
	queries    *prometheus.CounterVec
	notices    *prometheus.CounterVec
	dropped    prometheus.Counter
	// commitSeconds and commitOrders are the payment shards' group commits: how long each
	// took, and how many orders it wrote.
	commitSeconds prometheus.Histogram
	commitOrders  prometheus.Histogram
	// voucherSeconds is where the vouchers of new orders waited in their shard, by stage.
	voucherSeconds                            *prometheus.HistogramVec
	voucherInbox, voucherRound, voucherCommit prometheus.Observer
}

// NewMetrics makes the metrics; Register adds them (and the gauges of e) to a registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		orders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_payment_orders_total",
			Help: "Payment orders that reached a final state, by form, state and result; exemplars carry the biz_id."},
			[]string{"form", "state", "result"}),
		exceptions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_payment_exceptions_total",
			Help: "Exception records opened, by kind."}, []string{"kind"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_payment_queries_total",
			Help: "Query-backs sent to a channel for a request whose outcome was not known."}, []string{"channel"}),
		notices: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_payment_notices_total",
			Help: "Channel callbacks by channel and outcome (applied, a duplicate too; or refused with a reason)."},
			[]string{"channel", "outcome"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "ledger_payment_anomalies_dropped_total",
			Help: "Anomalies that held no money, not recorded because their order held as many such records as it may."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_payment_commit_duration_seconds",
			Help:    "One payment shard's synced commit of a round of orders.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		commitOrders: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ledger_payment_commit_orders",
			Help: "Orders one payment shard's commit wrote.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		voucherSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ledger_payment_voucher_stage_seconds",
			Help: "Where a call's new orders waited in their payment shard before their vouchers were answered, " +
				"once per call and shard: inbox (sent, not yet taken by the shard), round (in the round being " +
				"gathered, which is sealed once the commit before it is durable), commit (from the seal until durable).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"stage"}),
	}
	m.voucherInbox = m.voucherSeconds.WithLabelValues("inbox")
	m.voucherRound = m.voucherSeconds.WithLabelValues("round")
	m.voucherCommit = m.voucherSeconds.WithLabelValues("commit")
	return m
}

// vouchers observes where the create messages of a durable round waited: the round was sealed
// at sealed and known durable at durable.
func (m *Metrics) vouchers(vs []voucherWait, sealed, durable time.Time) {
	for _, v := range vs {
		m.voucherInbox.Observe(v.taken.Sub(v.sent).Seconds())
		m.voucherRound.Observe(sealed.Sub(v.taken).Seconds())
		m.voucherCommit.Observe(durable.Sub(sealed).Seconds())
	}
}

// zero makes the series an operator alerts on exist before their first event.
func (m *Metrics) zero(channels []string) {
	for f := payment.Recharge; f <= payment.Pay; f++ {
		for _, st := range []payment.State{payment.Succeeded, payment.Failed} {
			r := payment.ResultOK
			if st == payment.Failed {
				r = payment.ResultChannelUnavailable
			}
			m.orders.WithLabelValues(f.String(), st.String(), r.String())
		}
	}
	for k := payment.DuplicatePayment; k <= payment.SettleRefused; k++ {
		m.exceptions.WithLabelValues(k.String())
	}
	for _, c := range channels {
		m.queries.WithLabelValues(c)
		m.notices.WithLabelValues(c, "applied")
		m.notices.WithLabelValues(c, "bad_notice")
	}
}

// ExemplarEvery is how often an order's count carries its biz id as the series' exemplar: one
// order in this many, by a hash of its id (ids are spread over shards by residue, so a plain
// id % 64 would pick one shard's orders only). A series keeps one exemplar, the latest; making
// one for every order cost 6% of the allocations of the payments bench.
const ExemplarEvery = 64

// sampled picks one id in ExemplarEvery (a power of two), by the top bits of a
// multiplicative hash.
func sampled(id uint64) bool {
	return (id*0x9E3779B97F4A7C15)>>(64-6) == 0
}

// finalOrder is what the metrics count of an order that reached a final state: kept with its
// round until it is durable, instead of a clone of the whole order.
type finalOrder struct {
	id     uint64
	bizID  string
	form   payment.Form
	state  payment.State
	result payment.Result
}

func finalOf(o *payment.Order) finalOrder {
	return finalOrder{id: o.ID, bizID: o.BizID, form: o.Form, state: o.State, result: o.Result}
}

// final counts an order that reached a final state and is durable.
func (m *Metrics) final(o finalOrder) {
	c := m.orders.WithLabelValues(o.form.String(), o.state.String(), o.result.String())
	if ea, ok := c.(prometheus.ExemplarAdder); ok && o.bizID != "" && (sampled(o.id) || o.state != payment.Succeeded) {
		ea.AddWithExemplar(1, prometheus.Labels{"biz_id": o.bizID})
	} else {
		c.Inc()
	}
}

// Register adds the metrics and e's gauges to r.
func (m *Metrics) Register(r prometheus.Registerer, e *Engine) error {
	for _, c := range []prometheus.Collector{m.orders, m.exceptions, m.queries, m.notices, m.dropped,
		m.commitSeconds, m.commitOrders, m.voucherSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_payment_orders_in_flight",
			Help: "Payment orders waiting for a posting, the channel or an exception's refund."},
			func() float64 { return float64(e.Stats().Active) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "ledger_payment_oldest_in_flight_seconds",
			Help: "Age of the oldest payment order in flight (0 when none)."},
			func() float64 {
				o := e.Stats().Oldest
				if o == 0 {
					return 0
				}
				return float64(int64(e.cfg.Now())-o) / 1e9
			}),
	} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
