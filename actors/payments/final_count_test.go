package payments

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ledgercore/ledger/ledger/payment"
)

// TestFinalCountedOnceDurable: an order that becomes final in a round is counted once that
// round is durable, by what it was when it became final (later changes to the order in memory
// do not move its count), and not at all when the round's commit fails.
func TestFinalCountedOnceDurable(t *testing.T) {
	count := func(m *Metrics, st payment.State, r payment.Result) (float64, string) {
		t.Helper()
		var got dto.Metric
		if err := m.orders.WithLabelValues(payment.Pay.String(), st.String(), r.String()).(prometheus.Metric).Write(&got); err != nil {
			t.Fatal(err)
		}
		ex := ""
		if e := got.GetCounter().GetExemplar(); e != nil && len(e.GetLabel()) == 1 {
			ex = e.GetLabel()[0].GetValue()
		}
		return got.GetCounter().GetValue(), ex
	}
	for _, commitErr := range []error{nil, errors.New("disk gone")} {
		e := &Engine{log: slog.New(slog.DiscardHandler), metrics: NewMetrics()}
		s := &shard{e: e, cur: newRound(), orders: map[uint64]*payment.Order{}, sched: map[uint64]uint64{}}
		o := &payment.Order{ID: 7, BizID: "biz-x", Form: payment.Pay, State: payment.Processing, Stage: payment.StageSettle}
		s.orders[o.ID] = o
		s.versioned(o, func() payment.Effects {
			o.State, o.Result, o.Stage = payment.Failed, payment.ResultChannelDeclined, payment.StageDone
			o.Version++
			return payment.Effects{}
		})
		s.versioned(o, func() payment.Effects { o.Version++; return payment.Effects{} }) // final already: not again
		// The order goes on changing after it became final (and its biz id is replaced).
		o.Result, o.State, o.BizID = payment.ResultAmountMismatch, payment.Succeeded, "biz-later"
		if n, _ := count(e.metrics, payment.Failed, payment.ResultChannelDeclined); n != 0 {
			t.Fatalf("counted before the round is durable: %v", n)
		}
		s.committing, s.cur = s.cur, newRound()
		s.committed(commitErr)
		n, ex := count(e.metrics, payment.Failed, payment.ResultChannelDeclined)
		later, _ := count(e.metrics, payment.Succeeded, payment.ResultAmountMismatch)
		want, wantEx := 1.0, "biz-x"
		if commitErr != nil {
			want, wantEx = 0, ""
		}
		if n != want || ex != wantEx || later != 0 {
			t.Errorf("commit error %v: failed/channel_declined %v (exemplar %q), succeeded/amount_mismatch %v; want %v (%q), 0",
				commitErr, n, ex, later, want, wantEx)
		}
	}
}
