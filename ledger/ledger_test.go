package ledger_test

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/ledgercore/ledger/ledger"
)

// TestPostingRules runs the scripts in testdata/: open accounts, transfer, hold, post, void,
// expire, deliver split legs, crash and recover. After every command the store is audited
// against the invariants (docs/ARCHITECTURE.md); a problem fails the test. Regenerate the expected
// output with -rewrite and review the diff.
func TestPostingRules(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		if strings.HasPrefix(path, filepath.Join("testdata", "fuzz")) {
			t.Skip("the fuzzer's corpus, not a script")
		}
		var w *world
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			if td.Cmd == "world" {
				var shards int
				td.ScanArgs(t, "shards", &shards)
				w = newWorld(uint32(shards))
				return ""
			}
			if w == nil {
				t.Fatalf("%s: start the script with 'world shards=N'", td.Pos)
			}
			out := run(t, w, td)
			if problems := w.audit(); len(problems) > 0 {
				t.Fatalf("%s: invariants broken after %s:\n%s", td.Pos, td.Cmd, strings.Join(problems, "\n"))
			}
			return out
		})
	})
}

func run(t *testing.T, w *world, td *datadriven.TestData) string {
	var out strings.Builder
	switch td.Cmd {
	case "accounts":
		var as []ledger.Account
		for _, l := range lines(td.Input) {
			as = append(as, parseAccount(t, l))
		}
		for i, r := range w.createAccounts(as) {
			fmt.Fprintf(&out, "%d: %s\n", as[i].ID, r)
		}
	case "transfers":
		var ts []ledger.Transfer
		for _, l := range lines(td.Input) {
			ts = append(ts, parseTransfer(t, l))
		}
		for i, r := range w.createTransfers(ts) {
			fmt.Fprintf(&out, "%d: %s", ts[i].ID, r)
			if k, ok := w.awaits[i]; ok {
				fmt.Fprintf(&out, " (answers when leg %s of %d is answered)", legKindNames[k.Kind], k.TransferID)
			}
			out.WriteString("\n")
		}
	case "deliver":
		n := 0
		if td.HasArg("n") {
			td.ScanArgs(t, "n", &n)
		}
		if td.HasArg("together") {
			w.gather()
		}
		fmt.Fprintf(&out, "delivered %d, queued %d\n", w.deliver(n), len(w.queue))
	case "queue":
		for _, m := range w.queue {
			for _, l := range m.legs {
				fmt.Fprintf(&out, "leg to shard %d: transfer=%d %s amount=%d", m.to, l.TransferID,
					legKindNames[l.Kind], l.Amount)
				if l.Buffered {
					out.WriteString(" buffered")
				}
				out.WriteString("\n")
			}
			for _, r := range m.answers {
				fmt.Fprintf(&out, "answer to shard %d: transfer=%d %s %s\n", m.to, r.TransferID,
					legKindNames[r.Kind], r.Result)
			}
			for _, k := range m.forget {
				fmt.Fprintf(&out, "forget to shard %d: transfer=%d %s\n", m.to, k.TransferID, legKindNames[k.Kind])
			}
		}
	case "advance":
		var seconds int
		td.ScanArgs(t, "seconds", &seconds)
		w.now += uint64(seconds) * 1_000_000_000
	case "expire":
		w.expire()
	case "crash":
		w.crash()
		fmt.Fprintf(&out, "recovered; outbox re-sends %d\n", len(w.queue))
	case "leg-records":
		fmt.Fprintf(&out, "%d\n", len(w.store.legsDone))
	case "balances":
		printBalances(w, &out)
	case "transfer":
		var id uint64
		td.ScanArgs(t, "id", &id)
		tr, ok := w.store.transfers[id]
		if !ok {
			return "not found\n"
		}
		fmt.Fprintf(&out, "%s amount=%d", stateNames[tr.State], tr.Amount)
		if tr.State == ledger.StateFailed {
			fmt.Fprintf(&out, " result=%s", tr.Result)
		}
		out.WriteString("\n")
	case "history":
		var id uint64
		td.ScanArgs(t, "id", &id)
		for _, p := range w.store.postings {
			if p.Account == id {
				fmt.Fprintf(&out, "transfer=%d op=%d amount=%d split=%v -> %s\n",
					p.TransferID, p.Op, p.Amount, p.Split, formatBalance(p.After))
			}
		}
	default:
		t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
	}
	return out.String()
}

func printBalances(w *world, out *strings.Builder) {
	ids := make([]uint64, 0, len(w.store.accounts))
	for id := range w.store.accounts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		a := w.store.accounts[id]
		name := fmt.Sprint(id)
		if shard, l, ok := ledger.IsTransit(id); ok {
			if a.Balance == (ledger.Balance{}) {
				continue
			}
			name = fmt.Sprintf("transit(shard=%d,ledger=%d)", shard, l)
		}
		fmt.Fprintf(out, "%s: %s\n", name, formatBalance(a.Balance))
	}
}

// TestExpiryNotHeldBackByHoldsInFlight: holds whose legs are unanswered cannot be released,
// but they must not take a sweep's whole budget: more of them than one sweep releases, due
// first, do not keep a due local hold from expiring, and each expires once its leg lands.
func TestExpiryNotHeldBackByHoldsInFlight(t *testing.T) {
	w := newWorld(2)
	var local, remote uint64 // accounts on shard 0 and 1
	for id := uint64(1); local == 0 || remote == 0; id++ {
		if ledger.ShardOf(id, 2) == 0 && local == 0 {
			local = id
		} else if ledger.ShardOf(id, 2) == 1 && remote == 0 {
			remote = id
		}
	}
	other := remote + 1000
	for ledger.ShardOf(other, 2) != 0 {
		other++
	}
	w.createAccounts([]ledger.Account{{ID: local, Ledger: 1, Code: 1}, {ID: remote, Ledger: 1, Code: 1},
		{ID: other, Ledger: 1, Code: 1}})
	stuck := ledger.ExpiriesPerSweepMax + 10
	for first := 0; first < stuck; first += ledger.BatchEventsMax {
		var ts []ledger.Transfer
		for i := first; i < min(first+ledger.BatchEventsMax, stuck); i++ {
			ts = append(ts, ledger.Transfer{ID: uint64(100 + i), DebitAccountID: local, CreditAccountID: remote,
				Amount: 1, Ledger: 1, Code: 1, Flags: ledger.TransferPending, Timeout: 1})
		}
		for i, r := range w.createTransfers(ts) {
			if r != ledger.ResultOK {
				t.Fatalf("hold %d: %v", ts[i].ID, r)
			}
		}
	}
	w.now += 1 // the local hold expires after the stuck ones
	if r := w.createTransfers([]ledger.Transfer{{ID: 99, DebitAccountID: local, CreditAccountID: other,
		Amount: 5, Ledger: 1, Code: 1, Flags: ledger.TransferPending, Timeout: 1}}); r[0] != ledger.ResultOK {
		t.Fatalf("local hold: %v", r)
	}
	w.now += 2 * 1_000_000_000
	w.expire()
	if tr := w.store.transfers[99]; tr.State != ledger.StatePendingExpired {
		t.Fatalf("the local hold is %v after a sweep: held back by %d holds in flight", stateNames[tr.State], stuck)
	}
	w.deliver(0) // the holds land; their expiries are armed again
	w.expire()
	w.deliver(0)
	expired := 0
	for _, tr := range w.store.transfers {
		if tr.State == ledger.StatePendingExpired {
			expired++
		}
	}
	if want := ledger.ExpiriesPerSweepMax + 1; expired != want {
		t.Fatalf("%d holds expired after their legs landed and one sweep, want %d", expired, want)
	}
	w.expire()
	w.deliver(0)
	if problems := w.audit(); len(problems) > 0 {
		t.Fatal(strings.Join(problems, "\n"))
	}
}

// TestForeignTransfersAreTrimmed: a transfer of another shard that a shard loads to answer
// exists_with_different_fields is not pinned in its cache, whatever its state: only its own
// pending and in-flight transfers are.
func TestForeignTransfersAreTrimmed(t *testing.T) {
	b := ledger.NewBook(0, 2)
	b.SetCacheLimit(1)
	n := 0
	for id := uint64(1); n < 1000; id++ {
		if ledger.ShardOf(id, 2) != 1 {
			continue
		}
		b.LoadTransfer(ledger.Transfer{ID: 10_000 + id, DebitAccountID: id, CreditAccountID: 3, Amount: 1,
			Ledger: 1, Code: 1, Flags: ledger.TransferPending, State: ledger.StatePending, Timestamp: 1})
		n++
	}
	if !b.TrimNeeded() {
		t.Fatal("1000 transfers over a cache of 1, and no trim needed")
	}
	b.Trim()
	kept := 0
	for id := uint64(10_000); id < 20_000; id++ {
		if _, ok := b.Transfer(id); ok {
			kept++
		}
	}
	if kept != 0 {
		t.Errorf("Trim kept %d of another shard's pending transfers", kept)
	}
}

// TestRemoteCacheKeptThroughABatch: the cache of other shards' accounts is bounded by Trim,
// never while a batch is loaded: a full cache must not forget accounts a batch relies on
// (loaded for it, or cached before), which would refuse a transfer to an existing account
// with credit_account_not_found, stored for good.
func TestRemoteCacheKeptThroughABatch(t *testing.T) {
	const shards = 2
	onShard := func(start uint64, shard uint32) uint64 {
		for id := start; ; id++ {
			if ledger.ShardOf(id, shards) == shard {
				return id
			}
		}
	}
	b := ledger.NewBook(0, shards)
	a := onShard(1, 0)
	b.LoadAccount(ledger.Account{ID: a, Ledger: 1, Code: 1})
	r := onShard(1, 1) // cached: a merchant paid before
	b.LoadRemote(ledger.AccountInfo{ID: r, Ledger: 1})
	next := r
	for n := 1; n < ledger.RemoteAccountCacheEntriesMax; n++ {
		next = onShard(next+1, 1)
		b.LoadRemote(ledger.AccountInfo{ID: next, Ledger: 1})
	}
	r2 := onShard(next+1, 1) // not cached: this batch needs it
	ts := []ledger.Transfer{
		{ID: 1, DebitAccountID: a, CreditAccountID: r, Amount: 10, Ledger: 1, Code: 1},
		{ID: 2, DebitAccountID: a, CreditAccountID: r2, Amount: 10, Ledger: 1, Code: 1},
	}
	var needs ledger.Needs
	b.NeedsForTransfers(ts, &needs)
	for _, id := range needs.Remote { // as the shard's prefetch loads them
		b.LoadRemote(ledger.AccountInfo{ID: id, Ledger: 1})
	}
	var fx ledger.Effects
	rs := make([]ledger.TransferResult, len(ts))
	b.CreateTransfers(1e12, ts, rs, &fx)
	if rs[0] != ledger.ResultOK || rs[1] != ledger.ResultOK {
		t.Fatalf("transfers to existing accounts: %v", rs)
	}
	if !b.TrimNeeded() {
		t.Fatal("the remote cache is over its limit, and no trim is asked for")
	}
	b.Trim()
	if b.TrimNeeded() {
		t.Error("still over a limit after Trim")
	}
}
