package gateway

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgercore/ledger/channel"
)

// One collector over two gateways, registered once; a gateway made again under a name
// replaces the old one instead of duplicating its series.
func TestCollector(t *testing.T) {
	col := NewCollector()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(col); err != nil {
		t.Fatal(err)
	}
	_ = newHarness(t, Config{Metrics: col}, answer(channel.Failed)) // "test": replaced by the next
	bank := newHarness(t, Config{Metrics: col}, answer(channel.Succeeded))
	card := newHarnessNamed(t, "card", Config{Metrics: col}, fail(errTransport))

	bank.submit("a", "b")
	bank.outcomes(2)
	bank.g.Submit(Call{Request: req("a"), Query: true})
	bank.next()
	card.submit("c")
	card.next()
	card.g.SetDegraded(true)
	card.submit("d")
	card.next()

	for _, c := range []struct {
		metric string
		labels map[string]string
		value  float64
	}{
		{"ledger_channel_requests_total", map[string]string{"channel": "test", "op": "payout", "outcome": "succeeded"}, 2},
		{"ledger_channel_requests_total", map[string]string{"channel": "card", "op": "payout", "outcome": "unknown"}, 1},
		{"ledger_channel_requests_total", map[string]string{"channel": "card", "op": "payout", "outcome": "rejected"}, 1},
		{"ledger_channel_rejections_total", map[string]string{"channel": "card", "reason": "degraded"}, 1},
		{"ledger_channel_in_flight", map[string]string{"channel": "card"}, 0},
		{"ledger_channel_queued", map[string]string{"channel": "card"}, 0},
		{"ledger_channel_degraded", map[string]string{"channel": "card"}, 1},
		{"ledger_channel_degraded", map[string]string{"channel": "test"}, 0},
		{"ledger_channel_circuit_state", map[string]string{"channel": "test"}, 0},
		{"ledger_channel_queries_total", map[string]string{"channel": "test", "outcome": "succeeded"}, 1},
		{"ledger_channel_queries_total", map[string]string{"channel": "test", "outcome": "unknown"}, 0},
	} {
		if v := gathered(t, reg, c.metric, c.labels); v != c.value {
			t.Errorf("%s%v = %v, want %v", c.metric, c.labels, v, c.value)
		}
	}
	if n := gathered(t, reg, "ledger_channel_request_seconds", map[string]string{"channel": "test", "op": "payout"}); n != 2 {
		t.Errorf("payout latencies observed: %v, want 2", n)
	}
	if n := gathered(t, reg, "ledger_channel_request_seconds", map[string]string{"channel": "test", "op": "query"}); n != 1 {
		t.Errorf("query latencies observed: %v, want 1", n)
	}
}

// gathered is the value of the counter or gauge metric{labels}, or the sample count of the
// histogram.
func gathered(t *testing.T, reg *prometheus.Registry, metric string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no %s%v", metric, labels)
	return 0
}
