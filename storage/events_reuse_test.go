package storage

import (
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger/payment"
)

// TestPaymentLogRecordsSurviveBufferReuse (regression, fixed by 30e9d60): an OrderWriter commits several rounds, and each
// round's event log record must read back as the orders it wrote. The writer hands its log
// record buffer (w.scratch) to ww.set, which keeps it as ww.val; the next commit then passes
// that same array to appendPaymentLog both as dst and as the scratch encodeOrder writes into.
func TestPaymentLogRecordsSurviveBufferReuse(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 2, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w := s.OrderWriter(1)
	defer w.Close()
	var want [][]uint64
	wrote := map[[2]uint64]*payment.Order{}
	for r := range 5 {
		var ws []OrderWrite
		var ids []uint64
		for i := range 3 {
			// Round 1 makes the orders; later rounds finish them again (not new, not
			// active, no exceptions: the commit's last value set is then the buffer
			// encodeOrder wrote into, which is the log record's).
			o := testOrder()
			o.ID = uint64(i + 1)
			o.Key = "key-" + string(rune('a'+i))
			o.Exceptions = nil
			o.Version = uint32(r)
			if r > 0 {
				o.State, o.Stage = payment.Succeeded, payment.StageDone
			}
			ws = append(ws, OrderWrite{Order: o, New: r == 0})
			ids = append(ids, o.ID)
			wrote[[2]uint64{uint64(r + 1), o.ID}] = o
		}
		if err := w.Commit(ws, 3); err != nil {
			t.Fatal(err)
		}
		want = append(want, ids)
	}
	if _, err := s.EventsState(); err != nil {
		t.Fatalf("events state (what Start reads): %v", err)
	}
	v := s.Live()
	for r, ids := range want {
		lr := LogRound{Log: PaymentLogBase + 1, Round: uint64(r + 1), Events: 3}
		ev, err := v.RoundEvents(lr)
		if err != nil {
			t.Fatalf("round %d: %v", r+1, err)
		}
		var got []uint64
		for _, oe := range ev.Orders {
			got = append(got, oe.Order.ID)
			if w := wrote[[2]uint64{uint64(r + 1), oe.Order.ID}]; !reflect.DeepEqual(w, oe.Order) {
				t.Fatalf("round %d: order %d logged as\n%+v\nwrote\n%+v", r+1, oe.Order.ID, oe.Order, w)
			}
		}
		if !reflect.DeepEqual(got, ids) {
			t.Fatalf("round %d logged orders %v, wrote %v", r+1, got, ids)
		}
	}
}
