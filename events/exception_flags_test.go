package events_test

import (
	"context"
	"errors"
	"time"

	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/storage"
)

// TestExceptionEventsSayOpened: an exception event says whether its commit opened the record
// (the order's previous version had fewer) or changed one it had, as the payment shard's
// commit found it: order events and their exception events are Exact.
func TestExceptionEventsSayOpened(t *testing.T) {
	store, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), Shards: 1, CacheBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	w := store.OrderWriter(0)
	o := &payment.Order{ID: 1, Key: "k", BizID: "b", Form: payment.Recharge, Ledger: 1, Amount: 100, To: 1,
		Channel: "bank", Created: 1, Updated: 1, Version: 1}
	commit := func(isNew bool) {
		t.Helper()
		c := *o
		c.Exceptions = append([]payment.Exception(nil), o.Exceptions...)
		if err := w.Commit([]storage.OrderWrite{{Order: &c, New: isNew}}, 1); err != nil {
			t.Fatal(err)
		}
		o.Version++
		o.Updated++
	}
	commit(true) // no record
	o.Exceptions = []payment.Exception{{Kind: payment.DuplicatePayment, Txn: "T2", Amount: 100, Created: 2, Updated: 2}}
	commit(false) // record 0 opened
	o.Exceptions[0].Note, o.Exceptions[0].Updated = "refunding", 3
	o.Exceptions = append(o.Exceptions, payment.Exception{Kind: payment.AmountMismatch, Txn: "T3", Amount: 9, Created: 3,
		Updated: 3})
	commit(false) // record 0 changed, record 1 opened
	w.Close()
	seq, err := events.Start(store, events.Config{Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Stop()
	var got []events.Event
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := errors.New("done")
	err = seq.Follow(ctx, 1, events.FollowOptions{}, func(batch []events.Event) error {
		got = append(got, batch...)
		if len(got) >= 6 {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) || len(got) != 6 {
		t.Fatalf("follow: %v, %d events", err, len(got))
	}
	type ev struct {
		exc           int
		exact, opened bool
	}
	want := []ev{{-1, true, false}, {-1, true, false}, {0, true, true}, {-1, true, false}, {0, true, false},
		{1, true, true}}
	for i, e := range got {
		if g := (ev{e.Exception, e.Exact, e.Opened}); e.Order == nil || g != want[i] {
			t.Errorf("event %d: %+v, want %+v", e.Seq, g, want[i])
		}
	}
}
