package storage

import (
	"crypto/sha256"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
)

// TestStatementRecords: records round-trip, list open or all in key order with paging, leave
// the open index once resolved; seen txns and imported files are found; an order's txns are
// indexed by when it recorded them.
func TestStatementRecords(t *testing.T) {
	s, err := Open("db", Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := func(day, txn string, step payment.ExceptionStep) *payment.StatementRecord {
		return &payment.StatementRecord{Channel: "bank", Day: day, Step: step, Created: 1, Updated: 2,
			Match: payment.Match{Class: payment.LineShort, Txn: txn, OrderNo: "P7", Order: 7, Op: channel.Pay, Ledger: 1,
				OurStatus: channel.Succeeded, OurAmount: 80, Out: 80, Currency: "CNY", Note: "n"}}
	}
	a, b, c := rec("2026-11-26", "T1", payment.ExcOpen), rec("2026-11-26", "T2", payment.ExcResolved),
		rec("2026-11-27", "T0", payment.ExcBooking)
	sum := sha256.Sum256([]byte("file"))
	if err := s.CommitStatement(StatementWrite{Records: []*payment.StatementRecord{a, b, c}, Channel: "bank",
		Date: "2026-11-26", Seen: []string{"T1", "T9"}, Import: &sum, Lines: 2}); err != nil {
		t.Fatal(err)
	}
	v := s.Live()
	if got, found, err := v.StatementRecord("bank", "2026-11-26", "T1"); err != nil || !found || !reflect.DeepEqual(got, a) {
		t.Fatalf("%+v %v %v", got, found, err)
	}
	list := func(resolved bool, ch, date, txn string) (out []string) {
		if err := v.StatementRecords(resolved, ch, date, txn, func(r *payment.StatementRecord) bool {
			out = append(out, r.Day+"/"+r.Txn)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := list(false, "", "", ""); !reflect.DeepEqual(got, []string{"2026-11-26/T1", "2026-11-27/T0"}) {
		t.Fatalf("open: %v", got)
	}
	if got := list(true, "bank", "2026-11-26", "T1"); !reflect.DeepEqual(got, []string{"2026-11-26/T2", "2026-11-27/T0"}) {
		t.Fatalf("all after T1: %v", got)
	}
	a.Step = payment.ExcResolved
	if err := s.CommitStatement(StatementWrite{Records: []*payment.StatementRecord{a}}); err != nil {
		t.Fatal(err)
	}
	if got := list(false, "", "", ""); !reflect.DeepEqual(got, []string{"2026-11-27/T0"}) {
		t.Fatalf("open after resolving T1: %v", got)
	}
	if d, found, err := v.StatementSeen("bank", "T9"); err != nil || !found || d != "2026-11-26" {
		t.Fatalf("seen T9: %q %v %v", d, found, err)
	}
	if _, found, _ := v.StatementSeen("bank", "T2"); found {
		t.Fatal("T2 seen")
	}
	if day, file, err := v.StatementImported("bank", "2026-11-26", sum); err != nil || !day || !file {
		t.Fatalf("imported: %v %v %v", day, file, err)
	}
	if day, file, _ := v.StatementImported("bank", "2026-11-26", sha256.Sum256(nil)); !day || file {
		t.Fatalf("another file of the day: %v %v", day, file)
	}
	if day, _, _ := v.StatementImported("bank", "2026-11-25", sum); day {
		t.Fatal("a day not imported")
	}
	if err := s.CommitStatement(StatementWrite{Records: []*payment.StatementRecord{rec("bad", "T", 1)}}); err == nil {
		t.Fatal("a record with a bad day")
	}

	w := s.OrderWriter(0)
	defer w.Close()
	o := testOrder() // T1 at 11, its record's refund R9 at 7
	o.Outcome = payment.OutcomeSucceeded
	if err := w.Commit([]OrderWrite{{Order: o, New: true, Txns: true}}, o.ID); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	if err := v.OrdersWithTxnsRecorded("bank", 7, 11, func(id uint64) bool { ids = append(ids, id); return true }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []uint64{42}) {
		t.Fatalf("orders with txns in [7, 11): %v", ids)
	}
	ids = nil
	_ = v.OrdersWithTxnsRecorded("bank", 12, 100, func(id uint64) bool { ids = append(ids, id); return true })
	if len(ids) != 0 {
		t.Fatalf("orders with txns in [12, 100): %v", ids)
	}
}
