package payments

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger/payment"
)

// An order's count carries its biz id as the exemplar for one success in ExemplarEvery and
// for every failure.
func TestFinalExemplars(t *testing.T) {
	var picked uint64
	n := map[uint64]int{} // picked ids by residue mod 4, as four shards own them
	for id := uint64(1); id <= 64*1000; id++ {
		if sampled(id) {
			n[id%4]++
			if picked == 0 && !sampled(id+1) {
				picked = id
			}
		}
	}
	for r := range uint64(4) {
		if n[r] < 150 || n[r] > 350 {
			t.Fatalf("ids picked by residue mod 4: %v; want about 250 each", n)
		}
	}
	for _, tc := range []struct {
		id    uint64
		state payment.State
		want  string
	}{{picked, payment.Succeeded, "biz-a"}, {picked + 1, payment.Succeeded, ""}, {picked + 1, payment.Failed, "biz-a"}} {
		m := NewMetrics()
		m.final(&payment.Order{ID: tc.id, BizID: "biz-a", Form: payment.Pay, State: tc.state})
		var got dto.Metric
		if err := m.orders.WithLabelValues(payment.Pay.String(), tc.state.String(), payment.Result(0).String()).(interface {
			Write(*dto.Metric) error
		}).Write(&got); err != nil {
			t.Fatal(err)
		}
		ex := ""
		if e := got.GetCounter().GetExemplar(); e != nil && len(e.GetLabel()) == 1 {
			ex = e.GetLabel()[0].GetValue()
		}
		if got.GetCounter().GetValue() != 1 || ex != tc.want {
			t.Errorf("order %d %v: count %v, exemplar %q, want %q", tc.id, tc.state, got.GetCounter().GetValue(), ex, tc.want)
		}
	}
}

// Each call's share of new orders on a shard is timed once, in three stages that add up to
// no more than the call took; a repeated request or a refused one writes no order and is not
// timed.
func TestVoucherStages(t *testing.T) {
	w := newWorld(t, fake.Config{Seed: 1, Latency: 2 * time.Millisecond})
	w.openAccounts()
	stages := func() (count [3]uint64, sum [3]float64) {
		t.Helper()
		for i, st := range []string{"inbox", "round", "commit"} {
			var m dto.Metric
			if err := w.engine.metrics.voucherSeconds.WithLabelValues(st).(prometheus.Metric).Write(&m); err != nil {
				t.Fatal(err)
			}
			count[i], sum[i] = m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
		}
		return count, sum
	}
	transfer := func(key string, amount uint64) payment.Request {
		return payment.Request{Key: key, Form: payment.Transfer, Ledger: 1, Amount: amount, From: alice, To: bob}
	}
	for i, key := range []string{"v1", "v2", "v3"} {
		_, before := stages()
		start := time.Now()
		if r := w.create(transfer(key, 10))[0]; r.Result != payment.ResultOK {
			t.Fatalf("%s: %v", key, r.Result)
		}
		took := time.Since(start).Seconds()
		count, after := stages()
		var spent float64
		for s := range 3 {
			if count[s] != uint64(i+1) {
				t.Fatalf("after %d calls, stage %d timed %d times", i+1, s, count[s])
			}
			d := after[s] - before[s]
			if d < 0 {
				t.Fatalf("stage %d: %v s", s, d)
			}
			spent += d
		}
		if spent > took {
			t.Fatalf("the stages of %s add up to %v s, the call took %v s", key, spent, took)
		}
		if after[2] == before[2] {
			t.Fatalf("%s: a synced commit took no time", key)
		}
	}
	if r := w.create(transfer("v1", 10))[0]; r.Result != payment.ResultExists {
		t.Fatalf("repeat: %v", r.Result)
	}
	if r := w.create(transfer("v4", 0))[0]; r.Result == payment.ResultOK {
		t.Fatalf("an amount of 0 was taken")
	}
	if count, _ := stages(); count != [3]uint64{3, 3, 3} {
		t.Fatalf("a repeat and a refusal were timed: %v", count)
	}
}
