package storage

import (
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
)

func TestRecordsRoundTrip(t *testing.T) {
	a := ledger.Account{ID: 7, UserData: 9, Timestamp: 11, Ledger: 3, Code: 4, Flags: ledger.AccountHistory,
		Balance: ledger.Balance{DebitsPending: ledger.U128(1), DebitsPosted: ledger.U128(2),
			CreditsPending: ledger.Uint128{Hi: 1, Lo: 3}, CreditsPosted: ledger.Uint128{Hi: 1 << 63, Lo: 1 << 63}}}
	key := idKey(nil, prefixAccount, a.ID)
	if got, err := decodeAccount(key, encodeAccount(nil, &a)); err != nil || got != a {
		t.Errorf("account: %+v %v", got, err)
	}
	tr := ledger.Transfer{ID: 5, DebitAccountID: 1, CreditAccountID: 2, Amount: 3, PendingID: 4, UserData: 6,
		Ledger: 7, Code: 8, Timeout: 9, Flags: ledger.TransferPending | ledger.TransferLinked, BizID: "order-42",
		Timestamp: 10, State: ledger.StateFailed, Result: ledger.ResultExceedsDebits}
	key = idKey(nil, prefixTransfer, tr.ID)
	if got, err := decodeTransfer(key, encodeTransfer(nil, &tr)); err != nil || got != tr {
		t.Errorf("transfer: %+v %v", got, err)
	}
	for i, history := range []bool{false, true, false} {
		p := ledger.Posting{Account: 3, Timestamp: 99, TransferID: 5, Amount: 10, Held: 20,
			Op: ledger.OpCreditPostHeld, Split: true, History: history, Day: ledger.Day(20261126 * (i % 2))}
		if history {
			p.After = a.Balance
		}
		if got, err := decodeOldPosting(postingKey(nil, p.Account, p.Timestamp), encodePosting(nil, &p)); err != nil || got != p {
			t.Errorf("posting: %+v %v", got, err)
		}
	}
	for i, refusable := range []bool{false, true, true} {
		l := ledger.Leg{LegKey: ledger.LegKey{TransferID: 5, Kind: ledger.LegCreditHold}, Account: 2, DebitAccount: 1,
			Amount: 3, Held: 4, Ledger: 7, From: 300, Refusable: refusable, Day: ledger.Day(20261126 * (i % 2))}
		if got, err := decodeLeg(outboxKey(nil, &l), encodeLeg(nil, &l)); err != nil || got != l {
			t.Errorf("leg: %+v %v", got, err)
		}
	}
}

// TestRecordsOlderThanDays: a format-5 posting or outbox leg (no day at its end) reads as day
// 0, and is written again byte for byte; a day of 0 written out is refused (not canonical).
func TestRecordsOlderThanDays(t *testing.T) {
	p := ledger.Posting{Account: 3, Timestamp: 99, TransferID: 5, Amount: 10, Op: ledger.OpDebitPost}
	old := encodePosting(nil, &p) // Day 0 writes no day: the format-5 bytes
	key := postingKey(nil, p.Account, p.Timestamp)
	if got, err := decodeOldPosting(key, old); err != nil || got.Day != 0 {
		t.Fatalf("format-5 posting: %+v %v", got, err)
	}
	if _, err := decodeOldPosting(key, append(old, 0)); err == nil {
		t.Error("a posting ending with day 0 was taken")
	}
	p.Day = 20261126
	if got, err := decodeOldPosting(key, encodePosting(nil, &p)); err != nil || got.Day != 20261126 || len(encodePosting(nil, &p)) != len(old)+4 {
		t.Errorf("posting with a day: %+v %v", got, err)
	}
	l := ledger.Leg{LegKey: ledger.LegKey{TransferID: 5, Kind: ledger.LegCreditPost}, Account: 2, DebitAccount: 1, Amount: 3, Ledger: 7}
	oldLeg := encodeLeg(nil, &l)
	if len(oldLeg) != legValLen {
		t.Fatalf("a leg of no day is %d bytes, the format-5 length is %d", len(oldLeg), legValLen)
	}
	if got, err := decodeLeg(outboxKey(nil, &l), oldLeg); err != nil || got.Day != 0 {
		t.Errorf("format-5 leg: %+v %v", got, err)
	}
	if _, err := decodeLeg(outboxKey(nil, &l), append(oldLeg, 0, 0, 0, 0)); err == nil {
		t.Error("a leg ending with day 0 was taken")
	}
}

// TestUvarint128: 128-bit totals encode as LEB128, the same bytes as a uvarint below 2^64;
// malformed, overlong and non-canonical encodings are refused.
func TestUvarint128(t *testing.T) {
	for _, v := range []ledger.Uint128{{}, {Lo: 1}, {Lo: 127}, {Lo: 128}, {Lo: 1<<64 - 1}, {Hi: 1},
		{Hi: 1, Lo: 1<<64 - 1}, {Hi: 1 << 62}, {Hi: 1<<64 - 1, Lo: 1<<64 - 1}} {
		b := appendUvarint128(nil, v)
		if v.Hi == 0 && !bytes.Equal(b, av(nil, v.Lo)) {
			t.Errorf("%v: %x, uvarint %x", v, b, av(nil, v.Lo))
		}
		r := reader{b: append(b, 0x55)}
		if got := r.uvarint128(); got != v || r.bad || !bytes.Equal(r.b, []byte{0x55}) {
			t.Errorf("%v: read %v (bad %v, left %x)", v, got, r.bad, r.b)
		}
	}
	max := appendUvarint128(nil, ledger.Uint128{Hi: 1<<64 - 1, Lo: 1<<64 - 1})
	if len(max) != uvarint128BytesMax || max[len(max)-1] != 3 {
		t.Fatalf("2^128-1 encodes as %x", max)
	}
	for _, bad := range [][]byte{nil, {0x80}, {0x81, 0x00}, append(append([]byte(nil), max[:18]...), 4),
		append(append([]byte(nil), max[:18]...), 0x83, 0)} {
		r := reader{b: bad}
		if got := r.uvarint128(); !r.bad {
			t.Errorf("%x: read %v, want refused", bad, got)
		}
	}
}

// FuzzDecode: no stored bytes make a decoder panic, and what decodes encodes back the same.
func FuzzDecode(f *testing.F) {
	tr := ledger.Transfer{ID: 5, DebitAccountID: 1, CreditAccountID: 2, Amount: 3, BizID: "x"}
	f.Add(byte(0), idKey(nil, prefixTransfer, 5), encodeTransfer(nil, &tr))
	f.Add(byte(1), idKey(nil, prefixAccount, 5), encodeAccount(nil, &ledger.Account{ID: 5}))
	f.Add(byte(2), postingKey(nil, 1, 2), encodePosting(nil, &ledger.Posting{History: true}))
	o := testOrder()
	f.Add(byte(4), idKey(nil, prefixOrder, o.ID), encodeOrder(nil, o))
	f.Add(byte(5), pageKey(nil, 1, 9), encodePage(nil, []uint64{3, 4, 9}))
	f.Fuzz(func(t *testing.T, which byte, key, val []byte) {
		switch which % 6 {
		case 0:
			if x, err := decodeTransfer(key, val); err == nil && !bytes.Equal(encodeTransfer(nil, &x), val) {
				t.Fatalf("transfer %+v does not round-trip", x)
			}
		case 1:
			if x, err := decodeAccount(key, val); err == nil && !bytes.Equal(encodeAccount(nil, &x), val) {
				t.Fatalf("account %+v does not round-trip", x)
			}
		case 2:
			if x, err := decodeOldPosting(key, val); err == nil && !bytes.Equal(encodePosting(nil, &x), val) {
				t.Fatalf("posting %+v does not round-trip", x)
			}
		case 3:
			if x, err := decodeLeg(key, val); err == nil && !bytes.Equal(encodeLeg(nil, &x), val) {
				t.Fatalf("leg %+v does not round-trip", x)
			}
		case 4:
			if x, err := decodeOrder(key, val); err == nil && val[0] == orderVersion && !bytes.Equal(encodeOrder(nil, x), val) {
				t.Fatalf("order %+v does not round-trip", x)
			}
		case 5:
			if x, err := decodePage(nil, key, val); err == nil && !bytes.Equal(encodePage(nil, x), val) {
				t.Fatalf("index page %v does not round-trip", x)
			}
		}
	})
}

// TestShardCountIsKept: a store refuses another number of shards, and opens with its own
// when none is given.
func TestShardCountIsKept(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open("db", Options{FS: fs, Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if _, err := Open("db", Options{FS: fs, Shards: 4}); err == nil {
		t.Fatal("opened a 3-shard store with 4 shards")
	}
	s, err = Open("db", Options{FS: fs})
	if err != nil || s.Shards() != 3 {
		t.Fatalf("open with the stored count: %v", err)
	}
	_ = s.Close()
	if _, err := Open("other", Options{FS: fs}); err == nil {
		t.Fatal("opened an empty directory as a store without a shard count")
	}
}

// TestVerifyFindsTampering: a balance that disagrees with its journal is reported.
func TestVerifyFindsTampering(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b, w := openAccounts(t, s)
	var fx ledger.Effects
	trs := make([]ledger.TransferResult, 1)
	b.CreateTransfers(2, []ledger.Transfer{{ID: 1, DebitAccountID: 1, CreditAccountID: 2, Amount: 5, Ledger: 1, Code: 1}}, trs, &fx)
	fx.Freeze()
	if err := w.Commit(&fx, b.Clock()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(s.Live(), 1)
	if err != nil || len(rep.Problems) != 0 || rep.Postings != 2 || rep.Accounts != 2 {
		t.Fatalf("clean store: %+v %v", rep, err)
	}
	fx.Reset()
	// A posting whose balance-after no movement explains.
	a, _ := b.Account(2)
	after := a.Balance
	after.CreditsPosted, _ = after.CreditsPosted.Add64(7)
	fx.Postings = append(fx.Postings, ledger.Posting{Account: 2, Timestamp: b.Clock() + 1, TransferID: 1,
		Op: ledger.OpCreditPost, Amount: 1, After: after})
	fx.Freeze()
	if err := w.Commit(&fx, b.Clock()+1); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Live().Account(2); got.CreditsPosted != after.CreditsPosted {
		t.Errorf("balance of account 2 is %v, its latest posting says %v", got.CreditsPosted, after.CreditsPosted)
	}
	rep, err = Verify(s.Live(), 1)
	if err != nil || len(rep.Problems) == 0 {
		t.Fatalf("tampered store passed: %+v %v", rep, err)
	}
	_ = w.Close()
}
