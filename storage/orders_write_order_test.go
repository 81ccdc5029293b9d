package storage

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/ledger/payment"
)

// BenchmarkOrderWriterCommit: a payment shard's commits as at 20,000 orders/s, one op a round
// of 64 new orders and 128 changes of orders a few rounds old, on a memory file system (the
// commit's CPU, not the disk's).
func BenchmarkOrderWriterCommit(b *testing.B) {
	_, w := memOrderWriter(b, 1, 0)
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
			o := changeOne(rng, live, seen, now)
			if o == nil {
				continue
			}
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

// changeOne picks one of live for a change at now (a new version), or nil when there is none
// or the one picked changed already in the round (seen, which it marks).
func changeOne(rng *rand.Rand, live []*payment.Order, seen map[uint64]bool, now uint64) *payment.Order {
	if len(live) == 0 {
		return nil
	}
	o := live[rng.IntN(len(live))]
	if seen[o.ID] {
		return nil
	}
	seen[o.ID] = true
	o.Version++
	o.Updated = now
	return o
}

// TestOrderWriterBatchInKeyOrder: every batch OrderWriter.Commit hands Pebble is in key order,
// over rounds of new and changed orders whose idempotency keys, biz ids and channels are
// prefixes of each other, refunds of several originals, every form, channel txns recorded
// (their time index), exceptions open and resolved, orders going active and final.
func TestOrderWriterBatchInKeyOrder(t *testing.T) {
	_, w := memOrderWriter(t, 1, 0)
	var records, rounds int
	prefixes := map[byte]bool{}
	w.w.inspect = func(b *pebble.Batch) {
		var last []byte
		for r := b.Reader(); ; {
			_, k, _, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if last != nil && bytes.Compare(last, k) > 0 {
				t.Fatalf("round %d: key %q after %q", rounds, k, last)
			}
			last = append(last[:0], k...)
			prefixes[k[0]] = true
			records++
		}
		rounds++
	}
	rng := rand.New(rand.NewPCG(3, 4))
	short := func() string { return "ab"[:rng.IntN(3)] + string(rune('a'+rng.IntN(3))) + "abc"[:rng.IntN(4)] }
	var live []*payment.Order
	next := uint64(0)
	for round := range 300 {
		var ows []OrderWrite
		seen := map[uint64]bool{}
		now := uint64(round+1) * 1000
		for range rng.IntN(30) {
			next += 1 + rng.Uint64N(3)
			o := &payment.Order{ID: next, Form: payment.Form(1 + rng.IntN(5)), Key: short(), BizID: short(), Channel: short(),
				Instruments: []payment.Instrument{{Kind: payment.Card, Amount: 10}}, State: payment.Accepted,
				Created: now, Updated: now, Version: 1}
			if rng.IntN(4) == 0 {
				o.BizID = ""
			}
			if o.Form == payment.Refund {
				o.Original = rng.Uint64N(3) + 1
			}
			live = append(live, o)
			seen[o.ID] = true
			ows = append(ows, OrderWrite{Order: o, New: true})
		}
		for range rng.IntN(30) {
			o := changeOne(rng, live, seen, now)
			if o == nil {
				continue
			}
			ow := OrderWrite{Order: o}
			switch rng.IntN(4) {
			case 0:
				o.State = payment.Succeeded
			case 1:
				o.Txn, o.TxnAt, ow.Txns = short(), now-rng.Uint64N(3), true
			case 2:
				step := payment.ExcOpen
				if rng.IntN(2) == 0 {
					step = payment.ExcResolved
				}
				o.Exceptions = append(o.Exceptions, payment.Exception{Kind: payment.DuplicatePayment, Step: step,
					Txn: short() + "x", Amount: 5, Created: now - rng.Uint64N(5), Updated: now})
				ow.Txns = true
			}
			ows = append(ows, ow)
		}
		if len(ows) == 0 {
			continue
		}
		if err := w.Commit(ows, next); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []byte{prefixActive, prefixOrderBiz, prefixTxnDay, prefixOrderKey, prefixOrder, prefixOrderSeq,
		prefixOpen, prefixExcepted, prefixEventLog} {
		if !prefixes[p] {
			t.Errorf("no %q key in %d records of %d rounds", p, records, rounds)
		}
	}
}
