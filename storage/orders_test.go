package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

func testOrder() *payment.Order {
	return &payment.Order{ID: 42, Key: "key-1", BizID: "biz-1", Form: payment.Pay, Ledger: 3, Amount: 100, From: 7,
		To: 8, Channel: "bank", ChannelAccount: "card", Original: 0, OriginalTxn: "",
		Instruments: []payment.Instrument{{Kind: payment.Coupon, Amount: 20, Account: 9, Refunded: 5},
			{Kind: payment.Card, Amount: 80, Refunded: 80}},
		State: payment.Partial, Stage: payment.StageSettle, Outcome: payment.OutcomeMismatch,
		Result: payment.ResultAmountMismatch, Ledgered: ledger.ResultExceedsCredits, Done: 1<<63 | 5, Refunded: 85,
		Txn: "T1", Paid: 81, SentAt: 1e18, Sends: 2, Dropped: 3, Queries: 3, Next: 2e18, Flagged: true, Created: 1, Updated: 2, Version: 9,
		Exceptions: []payment.Exception{{Kind: payment.AmountMismatch, Step: payment.ExcRefunding, Txn: "T1",
			Amount: 81, Note: "n", Attempt: 2, Refund: "R9", SentAt: 5, Queries: 1, Next: 6, Created: 3, Updated: 4,
			RefundAt: 7}}, TxnAt: 11}
}

func TestOrderRoundTrip(t *testing.T) {
	o := testOrder()
	key := idKey(nil, prefixOrder, o.ID)
	got, err := decodeOrder(key, encodeOrder(nil, o))
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("order:\n got %+v %v\nwant %+v", got, err, o)
	}
	// Every truncation is refused, never misread.
	enc := encodeOrder(nil, o)
	// A record of version 1 (no txn times) still reads, with the times 0.
	legacy := append([]byte{orderVersionLegacy}, enc[1:len(enc)-2]...)
	old := testOrder()
	old.TxnAt, old.Exceptions[0].RefundAt = 0, 0
	if got, err := decodeOrder(key, legacy); err != nil || !reflect.DeepEqual(got, old) {
		t.Fatalf("a version 1 order:\n got %+v %v\nwant %+v", got, err, old)
	}
	for n := range enc {
		if _, err := decodeOrder(key, enc[:n]); err == nil {
			t.Fatalf("a record cut at %d of %d bytes decoded", n, len(enc))
		}
	}
}

// memOrderWriter opens a store of shards on a memory file system and returns it with the order
// writer of shard; both close when the test ends.
func memOrderWriter(tb testing.TB, shards, shard uint32) (*Store, *OrderWriter) {
	tb.Helper()
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: shards, CacheBytes: 1 << 20})
	if err != nil {
		tb.Fatal(err)
	}
	w := s.OrderWriter(shard)
	tb.Cleanup(func() {
		_ = w.Close()
		_ = s.Close()
	})
	return s, w
}

// TestOrderIndexes: the idempotency, biz id, active and exception indexes follow the orders.
func TestOrderIndexes(t *testing.T) {
	s, w := memOrderWriter(t, 2, 1)
	a := testOrder()
	b := testOrder()
	b.ID, b.Key, b.Exceptions, b.State, b.Stage = 44, "key-2", nil, payment.Succeeded, payment.StageDone
	refund := &payment.Order{ID: 46, Key: "key-1", BizID: "biz-1", Form: payment.Refund, Original: 42,
		Instruments: []payment.Instrument{{Kind: payment.Card, Amount: 1}}, State: payment.Accepted, Stage: payment.StageHold}
	if err := w.Commit([]OrderWrite{{Order: a, New: true}, {Order: b, New: true}, {Order: refund, New: true}}, 46); err != nil {
		t.Fatal(err)
	}
	v, err := s.DurableSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for _, tc := range []struct {
		form     payment.Form
		original uint64
		key      string
		want     uint64
	}{{payment.Pay, 0, "key-1", 42}, {payment.Pay, 0, "key-2", 44}, {payment.Refund, 42, "key-1", 46},
		{payment.Refund, 43, "key-1", 0}, {payment.Recharge, 0, "key-1", 0}} {
		var id [1]uint64
		err := v.OrdersByKeys([]OrderKey{{tc.form, tc.original, tc.key}}, id[:])
		if err != nil || id[0] != tc.want {
			t.Errorf("key %v/%d/%s: %d %v", tc.form, tc.original, tc.key, id[0], err)
		}
	}
	// Many at once, in any order, absent ones among them (a key that is a prefix of a stored
	// one, or extends it, is another key).
	keys := []OrderKey{{payment.Refund, 42, "key-1"}, {payment.Pay, 0, "key-"}, {payment.Pay, 0, "key-2"},
		{payment.Pay, 0, "key-10"}, {payment.Pay, 0, "key-1"}, {payment.Refund, 43, "key-1"}}
	ids := make([]uint64, len(keys))
	if err := v.OrdersByKeys(keys, ids); err != nil || !reflect.DeepEqual(ids, []uint64{46, 0, 44, 0, 42, 0}) {
		t.Errorf("OrdersByKeys: %v %v", ids, err)
	}
	ids = nil
	if err := v.OrdersByBizID("biz-1", func(id uint64) bool { ids = append(ids, id); return true }); err != nil ||
		!reflect.DeepEqual(ids, []uint64{42, 44, 46}) {
		t.Errorf("biz id: %v %v", ids, err)
	}
	ids = nil
	if err := v.OrdersByBizID("biz-", func(id uint64) bool { ids = append(ids, id); return true }); err != nil || ids != nil {
		t.Errorf("a prefix of a biz id is another biz id: %v %v", ids, err)
	}
	ids = nil
	if err := v.ForEachActiveOrder(1, func(o *payment.Order) error { ids = append(ids, o.ID); return nil }); err != nil ||
		!reflect.DeepEqual(ids, []uint64{42, 46}) {
		t.Errorf("active: %v %v", ids, err)
	}
	if last, err := v.LastOrderID(1); err != nil || last != 46 {
		t.Errorf("last id %d %v", last, err)
	}
	ids = nil
	if err := v.OrdersWithExceptions(false, 0, func(o *payment.Order) bool { ids = append(ids, o.ID); return true }); err != nil ||
		!reflect.DeepEqual(ids, []uint64{42}) {
		t.Errorf("open exceptions: %v %v", ids, err)
	}
	// Resolved and finished: out of the active and open indexes, still listed with --all.
	a.Exceptions[0].Step, a.State, a.Stage = payment.ExcResolved, payment.Failed, payment.StageDone
	if err := w.Commit([]OrderWrite{{Order: a}}, 46); err != nil {
		t.Fatal(err)
	}
	v2, err := s.DurableSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	ids = nil
	_ = v2.ForEachActiveOrder(1, func(o *payment.Order) error { ids = append(ids, o.ID); return nil })
	if !reflect.DeepEqual(ids, []uint64{46}) {
		t.Errorf("active after: %v", ids)
	}
	for _, resolved := range []bool{false, true} {
		ids = nil
		_ = v2.OrdersWithExceptions(resolved, 0, func(o *payment.Order) bool { ids = append(ids, o.ID); return true })
		if want := map[bool][]uint64{false: nil, true: {42}}[resolved]; !reflect.DeepEqual(ids, want) {
			t.Errorf("exceptions (resolved %v): %v", resolved, ids)
		}
	}
}

// TestTransfersByBizID: a transfer is indexed under its biz id when it is written, a hold once
// (posting it writes the record again, not the index), and a biz id that is a prefix of
// another is not confused with it.
func TestTransfersByBizID(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, w := openAccounts(t, s)
	round := func(ts ...ledger.Transfer) {
		t.Helper()
		var fx ledger.Effects
		rs := make([]ledger.TransferResult, len(ts))
		b.CreateTransfers(ts[0].ID, ts, rs, &fx)
		for i, r := range rs {
			if r != ledger.ResultOK {
				t.Fatalf("transfer %d: %v", ts[i].ID, r)
			}
		}
		fx.Freeze()
		if err := w.Commit(&fx, b.Clock()); err != nil {
			t.Fatal(err)
		}
	}
	round(ledger.Transfer{ID: 10, DebitAccountID: 1, CreditAccountID: 2, Amount: 5, Ledger: 1, Code: 1,
		Flags: ledger.TransferPending, BizID: "order-1"},
		ledger.Transfer{ID: 11, DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1, BizID: "order-12"})
	round(ledger.Transfer{ID: 12, DebitAccountID: 1, CreditAccountID: 2, PendingID: 10, Ledger: 1, Code: 1,
		Flags: ledger.TransferPostPending, BizID: "order-1"})
	v, err := s.DurableSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for biz, want := range map[string][]uint64{"order-1": {10, 12}, "order-12": {11}, "order-": nil} {
		var ids []uint64
		if err := v.TransfersByBizID(biz, func(id uint64) bool { ids = append(ids, id); return true }); err != nil ||
			!reflect.DeepEqual(ids, want) {
			t.Errorf("biz id %q: %v %v, want %v", biz, ids, err, want)
		}
	}
}

// TestPaymentLogRounds: every commit of orders logs them as written, with the exception
// records that changed, round after round (the record's buffers are reused), and Verify
// finds the logs clean.
func TestPaymentLogRounds(t *testing.T) {
	s, w := memOrderWriter(t, 1, 0)
	var want [][]string
	for round := range 6 {
		var writes []OrderWrite
		var got []string
		for k := range 3 + round {
			o := testOrder()
			o.ID = uint64(k + 1)
			o.BizID = fmt.Sprintf("biz-%d-%d", round, k) // a longer record each round
			o.Updated = uint64(100 + round)
			o.Exceptions = nil
			// Done, with no exception record: its commit writes no index key with an empty
			// value, so the writer's value buffer is the one the order was encoded in (the
			// case where the log record was once encoded into its own buffer).
			o.Stage = payment.StageDone
			if round > 0 && k == 0 {
				o.Exceptions = []payment.Exception{{Kind: payment.DuplicatePayment, Note: fmt.Sprint("note ", round),
					Updated: uint64(round)}}
			}
			writes = append(writes, OrderWrite{Order: o, New: round == 0})
			got = append(got, fmt.Sprintf("%+v", *o))
		}
		if err := w.Commit(writes, 10); err != nil {
			t.Fatal(err)
		}
		if lr := w.LastRound(); lr.Round != uint64(round+1) || lr.Log != PaymentLogBase {
			t.Fatalf("round %d logged as %+v", round, lr)
		}
		want = append(want, got)
	}
	v := s.Snapshot()
	defer v.Close()
	for round := range want {
		ev, err := v.RoundEvents(LogRound{Log: PaymentLogBase, Round: uint64(round + 1), Events: uint32(len(want[round]) + min(round, 1))})
		if err != nil {
			t.Fatalf("round %d: %v", round+1, err)
		}
		for k, oe := range ev.Orders {
			if got := fmt.Sprintf("%+v", *oe.Order); got != want[round][k] {
				t.Fatalf("round %d order %d:\n%s\nwant\n%s", round+1, k, got, want[round][k])
			}
			if wantEx := k == 0 && round > 0; (len(oe.Exceptions) == 1) != wantEx {
				t.Fatalf("round %d order %d: changed exceptions %v", round+1, k, oe.Exceptions)
			}
			// The record is opened by the second round's commit and changed by the later ones:
			// the commit's comparison with the stored previous version says which.
			if !oe.Exact || (len(oe.Exceptions) == 1 && !reflect.DeepEqual(oe.Opened, []bool{round == 1})) {
				t.Fatalf("round %d order %d: exact %v opened %v", round+1, k, oe.Exact, oe.Opened)
			}
		}
	}
	rep, err := Verify(v, 1)
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify: %v %v", rep.Problems, err)
	}
}

// TestPaymentLogVersions: a payment log record of version 1 (the body uncompressed, written
// by format-5 builds) and of version 2 (compressed, written before the changed exception
// records were flagged) still read, their changed records' bare indices not saying whether
// the commit opened them (Exact false); a record of version 3 (compressed) or 4 (a body
// beyond the bound, uncompressed) reads each index with its flag; a compressed one that is
// cut, claims a body too large, or holds another count than its body is refused, as is a
// version no build wrote (what a build before version 3 does with a record of version 3).
func TestPaymentLogVersions(t *testing.T) {
	o := testOrder()
	o.Exceptions = append(o.Exceptions, o.Exceptions[0])
	o.Exceptions[1].Txn = "another"
	writes := []OrderWrite{{Order: o, New: true}}
	legacy, _, _ := appendPaymentBody(nil, writes, [][]int{{0}}, nil, nil)
	flagged, _, _ := appendPaymentBody(nil, writes, [][]int{{0 << 1, 1<<1 | 1}}, nil, nil)
	key := eventLogKey(nil, PaymentLogBase, 1)
	v1 := appendPaymentLogAs(nil, recordVersion, 77, 0, legacy)
	v2 := appendPaymentLogAs(nil, paymentLogCompressed, 77, 2, legacy)
	v3 := appendPaymentLog(nil, 77, 3, flagged)
	v4 := appendPaymentLogAs(nil, paymentLogFlaggedRaw, 77, 3, flagged)
	if v3[0] != paymentLogFlagged {
		t.Fatalf("a small body written as version %d", v3[0])
	}
	for name, tc := range map[string]struct {
		rec    []byte
		events uint32
		exc    []int
		exact  bool
		opened []bool
	}{
		"version 1":   {v1, 2, []int{0}, false, nil},
		"compressed":  {v2, 2, []int{0}, false, nil},
		"flagged":     {v3, 3, []int{0, 1}, true, []bool{false, true}},
		"flagged raw": {v4, 3, []int{0, 1}, true, []bool{false, true}},
	} {
		lr, err := logHead(key, tc.rec)
		if err != nil || lr.Time != 77 || lr.Events != tc.events {
			t.Fatalf("%s: head %+v %v", name, lr, err)
		}
		ev, err := paymentRound(key, tc.rec)
		if err != nil || len(ev.Orders) != 1 || !reflect.DeepEqual(ev.Orders[0].Order, o) ||
			!reflect.DeepEqual(ev.Orders[0].Exceptions, tc.exc) || ev.Orders[0].Exact != tc.exact ||
			!reflect.DeepEqual(ev.Orders[0].Opened, tc.opened) {
			t.Fatalf("%s: %+v %v", name, ev, err)
		}
	}
	for _, ver := range []byte{5, 9} {
		for _, rec := range [][]byte{append([]byte{ver}, v3[1:]...), append([]byte{ver}, v4[1:]...)} {
			if _, err := logHead(key, rec); err == nil || !strings.Contains(err.Error(), "unknown version") {
				t.Errorf("version %d: head %v", ver, err)
			}
		}
	}
	body := legacy
	bad := map[string][]byte{
		"cut":           v2[:len(v2)-3],
		"cut flagged":   v3[:len(v3)-3],
		"count":         appendPaymentLogAs(nil, paymentLogCompressed, 77, 3, body),
		"count flagged": appendPaymentLog(nil, 77, 2, flagged),
		"raw no events": appendPaymentLogAs(nil, paymentLogFlaggedRaw, 77, 0, flagged),
		"version":       append([]byte{9}, v2[1:]...),
		"empty":         nil,
		"claims 1 GiB":  append(av([]byte{paymentLogCompressed, 1, 2}, 1<<30), 0, 0, 0),
		"no body":       {paymentLogCompressed, 1, 2},
		"garbage bytes": append([]byte{paymentLogCompressed, 1, 2}, 5, 0xff, 0xff, 0xff),
	}
	for name, rec := range bad {
		if ev, err := paymentRound(key, rec); err == nil {
			t.Errorf("%s: read as %+v", name, ev)
		}
	}
}

// TestActiveIndexAcrossWriters: an order's active index key is set when it becomes active and
// deleted when it stops being so, whichever writer (process) wrote it before: an order
// active across a restart is set again by the new writer, so its deletion must remove every
// earlier set, also once flushes and compactions have spread them over levels. Checked
// against a model after each step, and after a full compaction.
func TestActiveIndexAcrossWriters(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(7, 9))
	active := map[uint64]bool{}
	orders := map[uint64]*payment.Order{}
	w := s.OrderWriter(0)
	next := uint64(1)
	check := func(step int) {
		t.Helper()
		v := s.Live()
		var got []uint64
		if err := v.ForEachActiveOrder(0, func(o *payment.Order) error { got = append(got, o.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		var want []uint64
		for id, a := range active {
			if a {
				want = append(want, id)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("step %d: active %v, want %v", step, got, want)
		}
	}
	for step := range 300 {
		var ws []OrderWrite
		seen := map[uint64]bool{}
		for range 1 + rng.IntN(4) {
			if rng.IntN(3) == 0 || len(orders) == 0 {
				o := testOrder()
				o.ID, o.Key, o.Exceptions = next, fmt.Sprint("k", next), nil
				o.Stage = payment.StageAwait
				if rng.IntN(4) == 0 {
					o.Stage = payment.StageDone // new and final at once: never indexed
				}
				next++
				orders[o.ID] = o
				ws = append(ws, OrderWrite{Order: clone(o), New: true})
				seen[o.ID] = true
				continue
			}
			id := 1 + rng.Uint64N(next-1)
			if seen[id] {
				continue
			}
			seen[id] = true
			o := orders[id]
			o.Stage = payment.StageAwait // active again (a duplicate payment reopens an order)
			if rng.IntN(2) == 0 {
				o.Stage = payment.StageDone
			}
			o.Version++
			ws = append(ws, OrderWrite{Order: clone(o)})
		}
		if err := w.Commit(ws, next); err != nil {
			t.Fatal(err)
		}
		for _, ow := range ws {
			active[ow.Order.ID] = ow.Order.Active()
		}
		check(step)
		switch rng.IntN(10) {
		case 0: // a restart: the new writer knows nothing of what the last one set
			_ = w.Close()
			w = s.OrderWriter(0)
		case 1, 2, 3:
			if err := s.db.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = w.Close()
	if err := s.db.Compact(context.Background(), []byte{prefixActive}, []byte{prefixActive + 1}, true); err != nil {
		t.Fatal(err)
	}
	check(-1)
}

func clone(o *payment.Order) *payment.Order {
	c := *o
	c.Instruments = slices.Clone(o.Instruments)
	c.Exceptions = slices.Clone(o.Exceptions)
	return &c
}

// TestPaymentLogLargeBodyUncompressed: a round whose body is beyond what a compressed record
// may claim is written uncompressed (version 4, paymentLogFlaggedRaw), which reads back (what
// the writer writes, the reader reads); a compressed record claiming that much is refused.
func TestPaymentLogLargeBodyUncompressed(t *testing.T) {
	var writes [][]int
	var ws []OrderWrite
	for i := range 5 {
		o := testOrder()
		o.ID, o.Exceptions = uint64(i+1), nil
		o.Txn = strings.Repeat(string(rune('a'+i)), paymentLogBodyMax/4) // five of these pass the bound
		ws = append(ws, OrderWrite{Order: o})
		writes = append(writes, nil)
	}
	body, _, _ := appendPaymentBody(nil, ws, writes, nil, nil)
	if len(body) <= paymentLogBodyMax {
		t.Fatalf("body of %d bytes, not beyond %d", len(body), paymentLogBodyMax)
	}
	rec := appendPaymentLog(nil, 9, len(ws), body)
	if rec[0] != paymentLogFlaggedRaw {
		t.Fatalf("a body of %d bytes written as version %d", len(body), rec[0])
	}
	key := eventLogKey(nil, PaymentLogBase, 1)
	ev, err := paymentRound(key, rec)
	if err != nil || len(ev.Orders) != len(ws) || ev.Orders[4].Order.Txn != ws[4].Order.Txn {
		t.Fatalf("read back: %v", err)
	}
	if lr, err := logHead(key, rec); err != nil || lr.Events != uint32(len(ws)) {
		t.Fatalf("head %+v %v", lr, err)
	}
}

// TestPaymentLogMalformedCounts: a compressed record whose head counts no events, or whose
// body claims more orders than its bytes could hold, is refused, by the head's reader and
// the body's alike, without allocating for the claim.
func TestPaymentLogMalformedCounts(t *testing.T) {
	key := eventLogKey(nil, PaymentLogBase, 1)
	body, _, _ := appendPaymentBody(nil, []OrderWrite{{Order: testOrder()}}, [][]int{nil}, nil, nil)
	zero := appendPaymentLog(nil, 9, 0, body)
	if _, err := logHead(key, zero); err == nil {
		t.Error("logHead took a head of no events")
	}
	if _, err := paymentRound(key, zero); err == nil {
		t.Error("paymentRound took a head of no events")
	}
	// A count of almost 2^20 orders in 1 MiB, which no order of fewer than 32 bytes could
	// make: 32 MiB of order events, were they allocated.
	huge := av(nil, 1<<20-16)
	huge = append(huge, make([]byte, 1<<20)...)
	rec := appendPaymentLog(nil, 9, 1, huge)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := paymentRound(key, rec); err == nil {
		t.Error("a body claiming 2^20 orders in 1 MiB was read")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 { // the body itself: 1 MiB
		t.Errorf("%d bytes allocated to refuse it", grew)
	}
}

// TestOrderWriterRefusesAnOrderTwice: the active index is written from what the writer knows
// of each order's last commit, so one commit may hold an order once; twice is refused and
// nothing is written.
func TestOrderWriterRefusesAnOrderTwice(t *testing.T) {
	s, w := memOrderWriter(t, 1, 0)
	o := testOrder()
	o.Exceptions = nil
	done := clone(o)
	done.Stage = payment.StageDone
	if err := w.Commit([]OrderWrite{{Order: o, New: true}, {Order: done}}, 50); err == nil {
		t.Fatal("a commit of one order twice was taken")
	}
	if _, found, err := s.Live().Order(o.ID); found || err != nil {
		t.Fatalf("the refused commit wrote the order (%v)", err)
	}
	if err := w.Commit([]OrderWrite{{Order: o, New: true}}, 50); err != nil {
		t.Fatalf("the writer after a refused commit: %v", err)
	}
}
