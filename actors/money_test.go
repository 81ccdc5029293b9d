package actors

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
	"github.com/ledgercore/ledger/storage/storagetest"
)

// accountOn returns the first id from start up that lives on shard of shards.
func accountOn(start uint64, shard, shards uint32) uint64 {
	for id := start; ; id++ {
		if ledger.ShardOf(id, shards) == shard {
			return id
		}
	}
}

func storedTransfer(t *testing.T, l *Ledger, id uint64) ledger.Transfer {
	t.Helper()
	var tr ledger.Transfer
	err := l.Read(func(v *storage.Reader) error {
		var found bool
		var err error
		tr, found, err = v.Transfer(id)
		if err == nil && !found {
			err = fmt.Errorf("transfer %d not found", id)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func balanceOf(t *testing.T, l *Ledger, id uint64) ledger.Balance {
	t.Helper()
	var a ledger.Account
	err := l.Read(func(v *storage.Reader) error {
		var found bool
		var err error
		a, found, err = v.Account(id)
		if err == nil && !found {
			err = fmt.Errorf("account %d not found", id)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// TestRepeatsAnswerWithTheFirstCopy: copies of a split transfer whose credit account may
// refuse it, in one request and in concurrent requests, answer only once the outcome is
// final, and all the same: the refusal when the credit account refuses (never exists, which
// means the transfer succeeded), ok once and exists for the rest when it accepts.
func TestRepeatsAnswerWithTheFirstCopy(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	l := startLedger(t, store)
	defer l.Stop()
	payer := accountOn(1, 0, 2)
	limited := accountOn(payer+1, 1, 2) // credits_must_not_exceed_debits, on the other shard
	funder := accountOn(limited+1, 1, 2)
	openAccounts(t, l, ledger.Account{ID: payer, Ledger: 1, Code: 1},
		ledger.Account{ID: limited, Ledger: 1, Code: 1, Flags: ledger.AccountCreditsMustNotExceedDebits},
		ledger.Account{ID: funder, Ledger: 1, Code: 1})
	tr := func(id, amount uint64) ledger.Transfer {
		return ledger.Transfer{ID: id, DebitAccountID: payer, CreditAccountID: limited, Amount: amount, Ledger: 1, Code: 1}
	}
	copies := func(t *testing.T, x ledger.Transfer, n int) []ledger.TransferResult {
		t.Helper()
		out := make([]ledger.TransferResult, n)
		var wg sync.WaitGroup
		for i := range out {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rs, err := l.CreateTransfers([]ledger.Transfer{x})
				if err != nil {
					t.Error(err)
					return
				}
				out[i] = rs[0]
			}()
		}
		wg.Wait()
		return out
	}

	// The limited account has no debits: it refuses.
	rs, err := l.CreateTransfers([]ledger.Transfer{tr(1, 10), tr(1, 10)})
	if err != nil || rs[0] != ledger.ResultExceedsDebits || rs[1] != ledger.ResultExceedsDebits {
		t.Fatalf("one request, two copies: %v %v", rs, err)
	}
	for i, r := range copies(t, tr(2, 10), 8) {
		if r != ledger.ResultExceedsDebits {
			t.Errorf("concurrent copy %d: %v", i, r)
		}
	}
	for _, id := range []uint64{1, 2} {
		if got := storedTransfer(t, l, id); got.State != ledger.StateFailed || got.Result != ledger.ResultExceedsDebits {
			t.Errorf("transfer %d: %+v", id, got)
		}
	}
	if b := balanceOf(t, l, payer); b != (ledger.Balance{}) {
		t.Errorf("the payer after refusals: %+v", b)
	}

	// Once it has debits, it accepts: one ok, the rest exists, booked once.
	if rs, err := l.CreateTransfers([]ledger.Transfer{{ID: 3, DebitAccountID: limited, CreditAccountID: funder,
		Amount: 1000, Ledger: 1, Code: 1}}); err != nil || rs[0] != ledger.ResultOK {
		t.Fatalf("funding: %v %v", rs, err)
	}
	rs, err = l.CreateTransfers([]ledger.Transfer{tr(4, 10), tr(4, 10)})
	if err != nil || rs[0] != ledger.ResultOK || rs[1] != ledger.ResultExists {
		t.Fatalf("one request, two copies: %v %v", rs, err)
	}
	ok := 0
	for i, r := range copies(t, tr(5, 20), 8) {
		switch r {
		case ledger.ResultOK:
			ok++
		case ledger.ResultExists:
		default:
			t.Errorf("concurrent copy %d: %v", i, r)
		}
	}
	if ok != 1 {
		t.Errorf("%d copies answered ok", ok)
	}
	if b := balanceOf(t, l, limited); b.CreditsPosted != ledger.U128(30) {
		t.Errorf("the limited account took %v", b.CreditsPosted)
	}
	verify(t, store)
}

// TestRefusalLeavesDebitAccountAsItWas: a split transfer refused by its credit account moves
// nothing on the debit account in the end, and never credits it: the debit account, which
// limits its own credits and is at its limit, stays within it and keeps its totals.
func TestRefusalLeavesDebitAccountAsItWas(t *testing.T) {
	store := openStore(t, vfs.NewMem(), 2)
	defer store.Close()
	l := startLedger(t, store)
	defer l.Stop()
	payer := accountOn(1, 0, 2) // limits its credits
	other := accountOn(payer+1, 0, 2)
	refuser := accountOn(1, 1, 2)
	openAccounts(t, l, ledger.Account{ID: payer, Ledger: 1, Code: 1, Flags: ledger.AccountCreditsMustNotExceedDebits},
		ledger.Account{ID: other, Ledger: 1, Code: 1},
		ledger.Account{ID: refuser, Ledger: 1, Code: 1, Flags: ledger.AccountCreditsMustNotExceedDebits})
	rs, err := l.CreateTransfers([]ledger.Transfer{
		{ID: 1, DebitAccountID: payer, CreditAccountID: other, Amount: 100, Ledger: 1, Code: 1},
		{ID: 2, DebitAccountID: other, CreditAccountID: payer, Amount: 100, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultOK || rs[1] != ledger.ResultOK {
		t.Fatalf("at the limit: %v %v", rs, err)
	}
	before := balanceOf(t, l, payer)
	rs, err = l.CreateTransfers([]ledger.Transfer{{ID: 3, DebitAccountID: payer, CreditAccountID: refuser,
		Amount: 1 << 62, Ledger: 1, Code: 1}})
	if err != nil || rs[0] != ledger.ResultExceedsDebits {
		t.Fatalf("refused transfer: %v %v", rs, err)
	}
	if after := balanceOf(t, l, payer); after != before {
		t.Errorf("the payer was %+v, is %+v", before, after)
	}
	if got := storedTransfer(t, l, 3); got.State != ledger.StateFailed || got.Result != ledger.ResultExceedsDebits {
		t.Errorf("transfer 3: %+v", got)
	}
	verify(t, store)
}

// TestAdmissionBoundsWorkInFlight: a shard admits at most ShardRequestsMax requests (and
// ShardEventsMax transfers) from admission until their answers. While the disk stalls, the
// requests past that are refused at once, whole, and write nothing, so what waits stays
// bounded; once the disk answers, the admitted ones complete.
func TestAdmissionBoundsWorkInFlight(t *testing.T) {
	fs := storagetest.NewStallFS(vfs.NewMem())
	store := openStore(t, fs, 1)
	defer store.Close()
	const requestsMax, eventsMax = 4, 40
	l, err := Start(store, Config{Shards: 1, ShardRequestsMax: requestsMax, ShardEventsMax: eventsMax,
		Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	defer fs.Resume() // first: Stop waits for the requests in flight
	openAccounts(t, l, ledger.Account{ID: 1, Ledger: 1, Code: 1}, ledger.Account{ID: 2, Ledger: 1, Code: 1})

	fs.Stall()
	const requests = 200
	errs := make(chan error, requests)
	for i := 0; i < requests; i++ {
		go func() {
			_, err := l.CreateTransfers([]ledger.Transfer{{ID: uint64(100 + i), DebitAccountID: 1, CreditAccountID: 2,
				Amount: 1, Ledger: 1, Code: 1}})
			errs <- err
		}()
	}
	refused := 0
	for refused < requests-requestsMax {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrOverloaded) {
				t.Fatalf("while the disk stalls: %v", err)
			}
			refused++
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d requests refused while the disk stalls; the rest neither refused nor answered",
				refused, requests)
		}
		if n := l.AdmittedRequests(0); n > requestsMax {
			t.Fatalf("%d requests admitted, at most %d", n, requestsMax)
		}
	}
	if n := l.AdmittedRequests(0); n != requestsMax {
		t.Errorf("%d requests admitted while the disk stalls, want %d", n, requestsMax)
	}
	// A request larger than the room left for transfers is refused too.
	big := make([]ledger.Transfer, eventsMax)
	for i := range big {
		big[i] = ledger.Transfer{ID: uint64(1000 + i), DebitAccountID: 1, CreditAccountID: 2, Amount: 1, Ledger: 1, Code: 1}
	}
	if _, err := l.CreateTransfers(big); !errors.Is(err, ErrOverloaded) {
		t.Errorf("a request of %d transfers: %v", len(big), err)
	}
	fs.Resume()
	for i := 0; i < requestsMax; i++ {
		if err := <-errs; err != nil {
			t.Errorf("admitted request: %v", err)
		}
	}
	if n, e := l.AdmittedRequests(0), l.AdmittedEvents(0); n != 0 || e != 0 {
		t.Errorf("after the answers: %d requests and %d transfers still admitted", n, e)
	}
	if b := balanceOf(t, l, 2); b.CreditsPosted != ledger.U128(requestsMax) {
		t.Errorf("account 2 took %v, want %d: refused requests wrote something", b.CreditsPosted, requestsMax)
	}
	if _, err := l.CreateTransfers(big); err != nil {
		t.Errorf("a request of %d transfers once the disk answers: %v", len(big), err)
	}
}

// TestSameAnswersWhateverTheShards: the same workload, sent one request at a time, gets the
// same answer for every transfer, the same stored outcome and the same balances with one
// shard as with four. The workload has refusals of every kind (local ones, and credit
// accounts on other shards that refuse), repeats of transfers that failed and of ones that
// succeeded, copies in one request, holds posted and voided later, and linked chains.
// Transfers of one request touch different accounts, as the answers of transfers that touch
// the same account in one request depend on which shard runs first; a chain may not credit an
// account that limits its credits (with several shards that is linked_chain_spans_shards).
func TestSameAnswersWhateverTheShards(t *testing.T) {
	w := sameWorkload(rand.New(rand.NewPCG(7, 7)), 120)
	type outcome struct {
		answers   [][]ledger.TransferResult
		balances  map[uint64]ledger.Balance
		transfers map[uint64]ledger.Transfer
	}
	run := func(shards uint32) outcome {
		store := openStore(t, vfs.NewMem(), shards)
		defer store.Close()
		l, err := Start(store, Config{Shards: shards, HotFlushInterval: time.Millisecond,
			Fatal: func(err error) { t.Errorf("fatal: %v", err) }})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Stop()
		openAccounts(t, l, w.accounts...)
		var out outcome
		for _, req := range w.requests {
			rs, err := l.CreateTransfers(req)
			if err != nil {
				t.Fatal(err)
			}
			out.answers = append(out.answers, rs)
			if err := l.Drain(t.Context()); err != nil { // hot credits land before the next request
				t.Fatal(err)
			}
		}
		out.balances, out.transfers = map[uint64]ledger.Balance{}, map[uint64]ledger.Transfer{}
		for _, a := range w.accounts {
			out.balances[a.ID] = balanceOf(t, l, a.ID)
		}
		err = l.Read(func(v *storage.Reader) error {
			for _, req := range w.requests {
				for _, x := range req {
					tr, found, err := v.Transfer(x.ID)
					if err != nil {
						return err
					}
					if found {
						tr.Timestamp = 0
						out.transfers[x.ID] = tr
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		verify(t, store)
		return out
	}
	one, four := run(1), run(4)
	kinds := map[ledger.TransferResult]int{}
	for i, req := range w.requests {
		for k := range req {
			kinds[one.answers[i][k]]++
			if one.answers[i][k] != four.answers[i][k] {
				t.Errorf("request %d, transfer %d %+v: %v with 1 shard, %v with 4", i, req[k].ID, req[k],
					one.answers[i][k], four.answers[i][k])
			}
		}
	}
	for id, b := range one.balances {
		if four.balances[id] != b {
			t.Errorf("account %d: %+v with 1 shard, %+v with 4", id, b, four.balances[id])
		}
	}
	for id, tr := range one.transfers {
		if four.transfers[id] != tr {
			t.Errorf("transfer %d: %+v with 1 shard, %+v with 4", id, tr, four.transfers[id])
		}
	}
	if len(one.transfers) != len(four.transfers) {
		t.Errorf("%d transfers stored with 1 shard, %d with 4", len(one.transfers), len(four.transfers))
	}
	t.Logf("answers: %v", kinds)
	for _, r := range []ledger.TransferResult{ledger.ResultOK, ledger.ResultExists, ledger.ResultExceedsDebits,
		ledger.ResultExceedsCredits, ledger.ResultExistsWithDifferentFields, ledger.ResultLinkedEventFailed} {
		if kinds[r] == 0 {
			t.Errorf("the workload never answered %v", r)
		}
	}
}

type workload struct {
	accounts []ledger.Account
	requests [][]ledger.Transfer
}

// sameWorkload makes requests whose transfers touch different accounts (see
// TestSameAnswersWhateverTheShards).
func sameWorkload(rng *rand.Rand, requests int) workload {
	const accounts = 40
	var w workload
	flags := map[uint64]ledger.AccountFlags{}
	for id := uint64(1); id <= accounts; id++ {
		var f ledger.AccountFlags
		switch id % 8 {
		case 1, 2:
			f = ledger.AccountDebitsMustNotExceedCredits
		case 3:
			f = ledger.AccountCreditsMustNotExceedDebits
		case 4:
			f = ledger.AccountHistory
		}
		switch id {
		case 5:
			f = ledger.AccountHot | ledger.AccountInternal
		case 6:
			f = ledger.AccountClosed
		case 7:
			f = 0 // the bank
		}
		flags[id] = f
		w.accounts = append(w.accounts, ledger.Account{ID: id, Ledger: 1, Code: 1, Flags: f})
	}
	var done, holds []ledger.Transfer
	next := uint64(1000)
	for len(w.requests) < requests {
		used := map[uint64]bool{}
		pick := func() uint64 {
			for {
				if id := uint64(rng.IntN(accounts)) + 1; !used[id] {
					used[id] = true
					return id
				}
			}
		}
		var req, newHolds []ledger.Transfer
		for n := rng.IntN(8) + 1; len(req) < n && len(used) < accounts-4; {
			next++
			x := ledger.Transfer{ID: next, Ledger: 1, Code: 1, Amount: uint64(rng.IntN(300)) + 1}
			switch k := rng.IntN(100); {
			case k < 10 && len(done) > 0: // a repeat, sometimes changed
				x = done[rng.IntN(len(done))]
				if rng.IntN(3) == 0 {
					x.Amount++
				}
				req = append(req, x)
				continue
			case k < 20 && len(holds) > 0: // post or void a hold of an earlier request
				i := rng.IntN(len(holds))
				h := holds[i]
				if used[h.DebitAccountID] || used[h.CreditAccountID] {
					continue
				}
				used[h.DebitAccountID], used[h.CreditAccountID] = true, true
				holds = append(holds[:i], holds[i+1:]...)
				x.DebitAccountID, x.CreditAccountID, x.PendingID, x.Flags = h.DebitAccountID, h.CreditAccountID, h.ID, ledger.TransferPostPending
				x.Amount = uint64(rng.IntN(int(h.Amount) + 1))
				if rng.IntN(2) == 0 {
					x.Flags, x.Amount = ledger.TransferVoidPending, 0
				}
			case k < 30: // a chain of two from one account, crediting accounts without a limit
				d, c1, c2 := pick(), pick(), pick()
				if flags[c1]&ledger.AccountCreditsMustNotExceedDebits != 0 || flags[c2]&ledger.AccountCreditsMustNotExceedDebits != 0 {
					continue
				}
				y := ledger.Transfer{ID: next + 1, DebitAccountID: d, CreditAccountID: c2, Ledger: 1, Code: 1,
					Amount: uint64(rng.IntN(300)) + 1}
				x.DebitAccountID, x.CreditAccountID, x.Flags = d, c1, ledger.TransferLinked
				next++
				req = append(req, x, y)
				done = append(done, y)
				continue
			default:
				x.DebitAccountID, x.CreditAccountID = pick(), pick()
				if rng.IntN(3) == 0 && !used[7] {
					used[7] = true
					x.DebitAccountID = 7
				}
				if rng.IntN(5) == 0 {
					x.Flags = ledger.TransferPending
					newHolds = append(newHolds, x) // posted in a later request only
				}
			}
			req = append(req, x)
			if x.Flags&ledger.TransferLinked == 0 {
				done = append(done, x)
			}
			if rng.IntN(8) == 0 { // a copy in the same request
				req = append(req, x)
			}
		}
		holds = append(holds, newHolds...)
		if len(req) > 0 {
			w.requests = append(w.requests, req)
		}
	}
	return w
}
