package payments

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/channel/fake"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// FetchStatement passes the fetch on to the wrapped client.
func (c *countingClient) FetchStatement(ctx context.Context, date string) ([]byte, string, error) {
	return c.Client.(StatementFetcher).FetchStatement(ctx, date)
}

// renderStatement writes lines back as a statement file.
func renderStatement(t *testing.T, lines []channel.StatementLine) []byte {
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	_ = cw.Write(channel.StatementHeader)
	for _, l := range lines {
		_ = cw.Write([]string{l.Date, l.Txn, l.Op.String(), l.OrderNo, l.Original, l.Status.String(),
			strconv.FormatUint(l.Amount, 10), l.Currency, l.CompletedAt.Format(time.RFC3339Nano)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestStatementDay: a day of payments through the simulated channel, with the anomalies it
// injects (second collections, other amounts, declines) and a callback held back; then the
// channel's statement, signed, with anomalies of its own injected (a line dropped, an amount
// changed, a payout's status changed, a line for no order of ours). Every injected anomaly is
// found exactly once and nothing else is reported; the held-back order is settled by the
// statement; a forged statement is refused and writes nothing; a second import, and one after
// a restart, change nothing; an operator reverses the short txn through suspense.
func TestStatementDay(t *testing.T) {
	base := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	began := time.Now()
	var skip atomic.Int64 // moved on a day once the day's payments are done
	clock := func() time.Time { return base.Add(time.Since(began) + time.Duration(skip.Load())) }
	w := newWorld(t, fake.Config{Seed: 7, Latency: time.Millisecond, DupPayRate: 0.15, MismatchRate: 0.1,
		FailRate: 0.1, Now: clock})
	w.stop()
	w.now = func() uint64 { return uint64(clock().UnixNano()) }
	w.start()
	w.openAccounts()
	const date = "2026-11-26"

	var ids []uint64
	for i := range 40 {
		rs := w.create(payment.Request{Key: fmt.Sprint("r", i), BizID: fmt.Sprint("biz-r", i), Form: payment.Recharge,
			Ledger: 1, Amount: uint64(1000 + i), To: alice, Channel: "bank", ChannelAccount: "card-1"})
		ids = append(ids, rs[0].Order.ID)
	}
	orders := w.settle(ids...)
	var withdraws []uint64
	for i := range 6 {
		rs := w.create(payment.Request{Key: fmt.Sprint("w", i), BizID: fmt.Sprint("biz-w", i), Form: payment.Withdraw,
			Ledger: 1, Amount: uint64(10 + i), From: alice, Channel: "bank", ChannelAccount: "card-1"})
		withdraws = append(withdraws, rs[0].Order.ID)
	}
	orders = append(orders, w.settle(withdraws...)...)
	var dups, mismatches, declined int
	for _, o := range orders {
		for _, x := range o.Exceptions {
			switch x.Kind {
			case payment.DuplicatePayment:
				dups++
			case payment.AmountMismatch:
				mismatches++
			}
		}
		if o.Result == payment.ResultChannelDeclined {
			declined++
		}
	}
	if dups == 0 || mismatches == 0 || declined == 0 {
		t.Fatalf("the channel injected %d duplicates, %d mismatches, %d declines: pick another seed", dups, mismatches, declined)
	}

	// A callback held back: the order waits for it (PROCESSING) when the statement comes (its
	// query-backs answer that the channel still has it).
	w.handler.Store(nil)
	w.client.quiet.Store(true)
	held := w.create(payment.Request{Key: "held", BizID: "biz-held", Form: payment.Recharge, Ledger: 1, Amount: 777,
		To: alice, Channel: "bank", ChannelAccount: "card-1"})[0].Order.ID
	// The channel draws its outcome (it may decline it): any final status will do, the
	// statement settles the order either way.
	waitFor(t, func() bool {
		r, err := w.client.Client.Query(context.Background(), channel.Pay, payment.OrderNo(held))
		return err == nil && (r.Status == channel.Succeeded || r.Status == channel.Failed)
	})
	// The day is over (the channel's statement is of a whole day, the ledger imports no day
	// before it ended): the clocks move on a day.
	if _, _, _, err := w.fake.Statement(date); !errors.Is(err, fake.ErrNotFinal) {
		t.Fatalf("the channel's statement of a day not over: %v", err)
	}
	if _, err := w.engine.ImportStatement(context.Background(), "bank", date); !errors.Is(err, ErrDayNotOver) {
		t.Fatalf("an import of a day not over: %v", err)
	}
	skip.Store(int64(24 * time.Hour))
	if !hasOrder(w, date, held) {
		t.Fatal("the held-back order is not on the day's statement")
	}

	body, _, _, err := w.fake.Statement(date)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := channel.ParseStatement(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// The held-back order's first line only: a second collection of it (the channel's
	// duplicate rate) would be news too, counted apart from the orders' duplicates above.
	heldLines := 0
	lines = slices.DeleteFunc(lines, func(l channel.StatementLine) bool {
		if l.OrderNo != payment.OrderNo(held) {
			return false
		}
		heldLines++
		return heldLines > 1
	})
	// The statement's own anomalies: pick plain successes (one txn, no record) to change.
	plain := func(op channel.Op, skip ...string) int {
		for i, l := range lines {
			id, _, _ := payment.ParseOrderNo(l.OrderNo)
			o := orderByID(orders, id)
			if o != nil && l.Op == op && l.Status == channel.Succeeded && o.Txn == l.Txn && len(o.Exceptions) == 0 &&
				!slices.Contains(skip, l.Txn) {
				return i
			}
		}
		t.Fatalf("no plain %v line", op)
		return 0
	}
	dropped := plain(channel.Pay)
	changed := plain(channel.Pay, lines[dropped].Txn)
	payout := plain(channel.Payout)
	want := map[payment.LineClass]string{
		payment.LineShort:  lines[dropped].Txn,
		payment.LineAmount: lines[changed].Txn,
		payment.LineStatus: lines[payout].Txn,
		payment.LineLong:   "TX-LONG",
	}
	shortAmount := lines[dropped].Amount
	lines[changed].Amount++
	lines[payout].Status, lines[payout].Amount = channel.Failed, 0
	long := lines[0]
	long.Txn, long.OrderNo, long.Amount, long.Status, long.Op, long.Original = "TX-LONG", "P999999", 55, channel.Succeeded, channel.Pay, ""
	lines = append(slices.Delete(lines, dropped, dropped+1), long)
	tampered := renderStatement(t, lines)
	sig := channel.SignStatement(secret, date, tampered)

	// Forged (changed after signing) and unsigned statements are refused and write nothing.
	forged := bytes.Replace(tampered, []byte(",55,"), []byte(",99,"), 1)
	for _, c := range []struct {
		body []byte
		sig  string
	}{{forged, sig}, {tampered, ""}, {tampered, channel.SignStatement([]byte("another secret!!"), date, tampered)},
		{tampered, channel.SignStatement(secret, "2026-11-25", tampered)}} {
		if _, err := w.engine.ImportStatementFile("bank", date, c.body, c.sig); !errors.Is(err, channel.ErrBadStatement) {
			t.Fatalf("a forged statement: %v", err)
		}
	}
	if recs := statementRecords(t, w); len(recs) != 0 {
		t.Fatalf("a refused statement wrote %d records", len(recs))
	}

	// Derived from the books as they stand: every collection the books hold for a failed order
	// (an AMOUNT_MISMATCH's, a second collection of it or of a declined order, the held-back
	// order's too) whose line the statement has is held (the order failed, the channel says
	// the request succeeded, and the order's record holds the money: no statement record);
	// every second collection of a succeeded order a duplicate line.
	expectedOn := func(on []channel.StatementLine) (status []string, duplicates int) {
		t.Helper()
		os, err := w.engine.Orders(append(slices.Clone(ids), append(slices.Clone(withdraws), held)...))
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, l := range on {
			listed[l.Txn] = true
		}
		for _, o := range os {
			for _, x := range payment.ChannelTxns(o) {
				switch {
				case x.OrderNo != payment.OrderNo(o.ID) || x.Status != channel.Succeeded || !listed[x.Txn]:
				case o.State != payment.Succeeded:
					status = append(status, x.Txn)
				case !x.Own:
					duplicates++
				}
			}
		}
		return status, duplicates
	}
	expected := func() ([]string, int) { t.Helper(); return expectedOn(lines) } // the tampered statement's
	mismatched := func() []string { t.Helper(); s, _ := expected(); return s }
	check := func(rep StatementReport, again bool) {
		t.Helper()
		got := map[payment.LineClass][]string{}
		for _, d := range rep.Differences {
			got[d.Class] = append(got[d.Class], d.Txn)
		}
		wants := map[payment.LineClass][]string{}
		for c, txn := range want {
			wants[c] = []string{txn}
		}
		for c := range wants {
			slices.Sort(wants[c])
			slices.Sort(got[c])
		}
		for c, n := range rep.Counts {
			if c.Difference() && n != len(wants[c]) {
				t.Errorf("%d %v, want %d", n, c, len(wants[c]))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wants) || rep.Clean() || rep.Again != again || rep.Pending != 0 {
			t.Fatalf("report %+v\ndifferences %v, want %v", rep, got, wants)
		}
		if held := mismatched(); rep.Counts[payment.LineHeld] != len(held) || len(held) == 0 {
			t.Fatalf("%d held lines, the failed orders hold %d", rep.Counts[payment.LineHeld], len(held))
		}
		if _, n := expected(); rep.Counts[payment.LineDuplicate] != n {
			t.Fatalf("%d duplicate lines, the succeeded orders recorded %d", rep.Counts[payment.LineDuplicate], n)
		}
	}
	rep, err := w.engine.ImportStatementFile("bank", date, tampered, sig)
	if err != nil {
		t.Fatal(err)
	}
	check(rep, false)
	if rep.Applied != 1 || rep.NewRecords != 4 {
		t.Fatalf("applied %d (want the held-back order's line), %d new records", rep.Applied, rep.NewRecords)
	}
	heldTxn := ""
	for _, l := range lines {
		if l.OrderNo == payment.OrderNo(held) {
			heldTxn = l.Txn
		}
	}
	if o := w.settle(held)[0]; o.Txn != heldTxn || o.TxnAt == 0 {
		t.Fatalf("the statement did not settle the held-back order: %v txn %q, the line's %q", o.State, o.Txn, heldTxn)
	} else {
		status, n := expected()
		t.Logf("the held-back order: %v (%v), %d lines at the channel; %d held lines, %d duplicate lines expected", o.State, o.Outcome, heldLines, len(status), n)
	}
	w.handler.Store(func() *http.Handler { h := w.engine.NotifyHandler(map[string][]byte{"bank": secret}); return &h }())
	w.client.quiet.Store(false)

	longID := payment.StatementTransferID("bank", date, "TX-LONG", false)
	var booked []ledger.Transfer
	if err := w.ledger.Read(func(v *storage.Reader) error {
		return v.Transfers([]uint64{longID}, func(tr ledger.Transfer) { booked = append(booked, tr) })
	}); err != nil || len(booked) != 1 || booked[0].Amount != 55 || booked[0].CreditAccountID != w.engine.cfg.Setup.PlatformAccount(1, 2005, "") {
		t.Fatalf("the long line's booking: %+v %v", booked, err)
	}
	suspense := w.engine.cfg.Setup.PlatformAccount(1, 2005, "")
	w.settle(held)
	inSuspense := w.balance(suspense)
	again, err := w.engine.ImportStatementFile("bank", date, tampered, sig)
	if err != nil {
		t.Fatal(err)
	}
	check(again, true)
	if again.NewRecords != 0 || again.Applied != 0 {
		t.Fatalf("a second import wrote %d records, applied %d", again.NewRecords, again.Applied)
	}
	w.stop()
	w.start()
	if again, err = w.engine.ImportStatementFile("bank", date, tampered, sig); err != nil || again.NewRecords != 0 {
		t.Fatalf("an import after a restart: %v %d new records", err, again.NewRecords)
	}
	check(again, true)
	recs := statementRecords(t, w)
	if len(recs) != 4 {
		t.Fatalf("%d records, want 4", len(recs))
	}
	if got := w.balance(suspense); got != inSuspense {
		t.Fatalf("suspense %d after re-imports, %d before (booked twice?)", got, inSuspense)
	}

	// The operator reverses the short txn: its money leaves the channel receivable through
	// suspense; a second resolution is refused.
	res, r, err := w.engine.ResolveStatement("bank", date, want[payment.LineShort], payment.ResolveReverse, "never collected")
	if err != nil || res != payment.ResultOK || r.Step != payment.ExcResolved {
		t.Fatalf("reverse: %v %v %+v", res, err, r)
	}
	if got := w.balance(suspense); got != inSuspense-int64(shortAmount) {
		t.Fatalf("suspense %d after the reversal, want %d", got, inSuspense-int64(shortAmount))
	}
	if res, _, _ := w.engine.ResolveStatement("bank", date, want[payment.LineShort], payment.ResolveClose, ""); res != payment.ResultExceptionNotOpen {
		t.Fatalf("a second resolution: %v", res)
	}
	if res, _, _ := w.engine.ResolveStatement("bank", date, "nope", payment.ResolveClose, ""); res != payment.ResultExceptionNotFound {
		t.Fatalf("an unknown record: %v", res)
	}
	if len(statementRecords(t, w)) != 3 {
		t.Fatal("the resolved record is still listed open")
	}
	// Fetched from the channel itself (not tampered): the true day, clean but for the
	// records already made. Its held lines are derived from its own lines: it also has the
	// held-back order's second collection, if the channel made one (cut from the tampered
	// file; applied by its callback since, held if the order failed).
	own, _, _, err := w.fake.Statement(date)
	if err != nil {
		t.Fatal(err)
	}
	ownLines, err := channel.ParseStatement(bytes.NewReader(own))
	if err != nil {
		t.Fatal(err)
	}
	rep, err = w.engine.ImportStatement(context.Background(), "bank", date)
	ownHeld, _ := expectedOn(ownLines) // the books after it (it may have applied that collection)
	if err != nil || rep.Counts[payment.LineShort] != 0 || rep.Counts[payment.LineLong] != 0 || rep.Counts[payment.LineAmount] != 0 ||
		rep.Counts[payment.LineStatus] != 0 || rep.Counts[payment.LineHeld] != len(ownHeld) {
		t.Fatalf("the channel's own statement: %v %+v, want %d held lines %v", err, rep, len(ownHeld), ownHeld)
	}
	if _, err := w.engine.ImportStatement(context.Background(), "nope", date); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("an unknown channel: %v", err)
	}
}

func orderByID(orders []*payment.Order, id uint64) *payment.Order {
	for _, o := range orders {
		if o.ID == id {
			return o
		}
	}
	return nil
}

func hasOrder(w *world, date string, id uint64) bool {
	body, _, _, err := w.fake.Statement(date)
	return err == nil && strings.Contains(string(body), ","+payment.OrderNo(id)+",")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

func statementRecords(t *testing.T, w *world) []*payment.StatementRecord {
	t.Helper()
	var out []*payment.StatementRecord
	err := w.ledger.Read(func(v *storage.Reader) error {
		return v.StatementRecords(false, "", "", "", func(r *payment.StatementRecord) bool { out = append(out, r); return true })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzImportStatement: any statement body, signed with the channel's secret or with the
// fuzzed signature, is either imported or refused with ErrBadStatement; a refused one
// changes nothing durable (orders, records, what was imported); nothing panics.
func FuzzImportStatement(f *testing.F) {
	began := time.Now()
	over := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC) // 2026-11-26 is over
	r := newNotifyRig(f, func(c *Config) {
		c.Secrets = map[string][]byte{"bank": secret}
		c.Now = func() uint64 { return uint64(over.Add(time.Since(began)).UnixNano()) }
	})
	const date = "2026-11-26"
	head := strings.Join(channel.StatementHeader, ",") + "\n"
	// A good statement of the day, signed, is imported: the fuzz's refusals are its input's.
	good := []byte(head + "2026-11-26,T0,pay,P999999,,failed,0,CNY,2026-11-26T10:00:00Z\n")
	if _, err := r.engine.ImportStatementFile("bank", date, good, channel.SignStatement(secret, date, good)); err != nil {
		f.Fatalf("a good statement: %v", err)
	}
	f.Add([]byte(head+"2026-11-26,T1,pay,P1,,succeeded,1000,CNY,2026-11-26T10:00:00Z\n"), true, "")
	f.Add([]byte(head+"2026-11-26,T1,pay,P1,,succeeded,1000,CNY,2026-11-26T10:00:00Z\n"), false, "00")
	f.Add([]byte(head+"2026-11-26,T9,pay,P77,,succeeded,5,CNY,2026-11-26T10:00:00Z\n2026-11-26,T9,pay,P7,,failed,0,CNY,2026-11-26T10:00:01Z\n"), true, "")
	f.Add([]byte(head+"2026-11-27,T1,pay,P1,,succeeded,1000,CNY,2026-11-27T10:00:00Z\n"), true, "")
	f.Add([]byte(head), true, "")
	f.Fuzz(func(t *testing.T, body []byte, sign bool, sig string) {
		if sign {
			sig = channel.SignStatement(secret, date, body)
		}
		state := func() string {
			var b strings.Builder
			b.WriteString(r.snapshot(t))
			_ = r.engine.ledger.Read(func(v *storage.Reader) error {
				day, _, err := v.StatementImported("bank", date, [32]byte{})
				fmt.Fprintf(&b, "imported %v\n", day)
				if err != nil {
					return err
				}
				return v.StatementRecords(true, "", "", "", func(x *payment.StatementRecord) bool {
					fmt.Fprintf(&b, "%+v\n", *x)
					return true
				})
			})
			return b.String()
		}
		before := state()
		_, err := r.engine.ImportStatementFile("bank", date, body, sig)
		if err == nil {
			r.quiet(t)
			return
		}
		if !errors.Is(err, channel.ErrBadStatement) {
			t.Fatalf("refused with %v, not ErrBadStatement", err)
		}
		if after := state(); after != before {
			t.Fatalf("a refused statement changed the store:\n%s\nthen\n%s", before, after)
		}
	})
}
