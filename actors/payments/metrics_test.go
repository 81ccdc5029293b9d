package payments

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

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
