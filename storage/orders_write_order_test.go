package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger/payment"
)

// BenchmarkOrderWriterCommit: a payment shard's commits as at 20,000 orders/s, one op a round
// of 64 new orders and 128 changes of orders a few rounds old, on a memory file system (the
// commit's CPU, not the disk's).
func BenchmarkOrderWriterCommit(b *testing.B) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	w := s.OrderWriter(0)
	defer w.Close()
	const fresh, changed, window = 64, 128, 4096
	rng := rand.New(rand.NewPCG(1, 2))
	var live []*payment.Order
	var next uint64
	writes := make([]OrderWrite, 0, fresh+changed)
	seen := map[uint64]bool{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		writes, now := writes[:0], next*50
		clear(seen)
		for range fresh {
			next++
			o := &payment.Order{ID: next, Key: fmt.Sprintf("k-%016x", rng.Uint64()), BizID: fmt.Sprintf("biz-%016x", rng.Uint64()),
				Form: payment.Pay, Ledger: 1, Amount: 100, From: 1 + rng.Uint64N(5000), To: 9, Channel: "demo",
				State: payment.Accepted, Created: now, Updated: now, Version: 1}
			live = append(live, o)
			seen[o.ID] = true
			writes = append(writes, OrderWrite{Order: o, New: true})
		}
		if len(live) > window {
			live = live[len(live)-window:]
		}
		for range changed {
			o := live[rng.IntN(len(live))]
			if seen[o.ID] {
				continue
			}
			seen[o.ID] = true
			o.Version++
			o.Updated = now
			if o.State == payment.Accepted {
				o.State = payment.Succeeded
			}
			writes = append(writes, OrderWrite{Order: o})
		}
		if err := w.Commit(writes, next); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*fresh), "ns/order")
}

// TestOrderWriteOrderIsKeyOrder: the orders OrderWriter.Commit writes each index in are the
// byte order of the index's keys (what the skiplist's cursor needs), over keys that are
// prefixes of each other, refunds of several originals, and every form.
func TestOrderWriteOrderIsKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	short := func() string { return "ab"[:rng.IntN(3)] + string(rune('a'+rng.IntN(3))) + "abc"[:rng.IntN(4)] }
	for round := range 300 {
		var ows []OrderWrite
		for range 1 + rng.IntN(40) {
			o := &payment.Order{ID: rng.Uint64N(1 << 20), Form: payment.Form(1 + rng.IntN(5)), Key: short(), BizID: short()}
			if rng.IntN(4) == 0 {
				o.BizID = ""
			}
			if o.Form == payment.Refund {
				o.Original = rng.Uint64N(3)
			}
			ows = append(ows, OrderWrite{Order: o, New: rng.IntN(3) > 0})
		}
		var wo orderWriteOrder
		check := func(name string, idx []int32, key func(*payment.Order) []byte, want func(OrderWrite) bool) {
			t.Helper()
			n := 0
			for i := range ows {
				if want(ows[i]) {
					n++
				}
			}
			if len(idx) != n {
				t.Fatalf("round %d: %s: %d writes, want %d", round, name, len(idx), n)
			}
			for k := 1; k < len(idx); k++ {
				a, b := key(ows[idx[k-1]].Order), key(ows[idx[k]].Order)
				if bytes.Compare(a, b) > 0 {
					t.Fatalf("round %d: %s: %x before %x", round, name, a, b)
				}
			}
		}
		all := func(OrderWrite) bool { return true }
		check("byID", wo.byID(ows), func(o *payment.Order) []byte { return idKey(nil, prefixOrder, o.ID) }, all)
		byKey := wo.newByKey(ows)
		check("newByKey", byKey, func(o *payment.Order) []byte { return orderKeyKey(nil, o.Form, o.Original, o.Key) },
			func(w OrderWrite) bool { return w.New })
		check("newByBizID", wo.newByBizID(ows), func(o *payment.Order) []byte {
			return be.AppendUint64(bizKey(nil, prefixOrderBiz, o.BizID), o.ID)
		}, func(w OrderWrite) bool { return w.New && w.Order.BizID != "" })
	}
}
