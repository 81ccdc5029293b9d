package ledger_test

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// world runs N books the way the shard actors do, but synchronously and deterministically:
// a round per command, an in-memory store that takes each round's Effects, and a queue of
// legs and answers that the test delivers when it says so.
type world struct {
	books []*ledger.Book
	now   uint64
	store store
	queue []message
	needs ledger.Needs
	fx    ledger.Effects
	// awaits: the positions, in the last createTransfers, of transfers that wait for a leg.
	awaits map[int]ledger.LegKey
}

type store struct {
	accounts  map[uint64]ledger.Account
	transfers map[uint64]ledger.Transfer
	postings  []ledger.Posting
	outbox    map[ledger.LegKey]ledger.Leg
	legsDone  map[ledger.LegKey]ledger.TransferResult
	clocks    map[uint32]uint64
}

type message struct {
	to      uint32
	legs    []ledger.Leg
	answers []ledger.LegResult
	forget  []ledger.LegKey
}

func newWorld(shards uint32) *world {
	w := &world{now: 1_000_000_000_000, store: store{
		accounts: map[uint64]ledger.Account{}, transfers: map[uint64]ledger.Transfer{},
		outbox: map[ledger.LegKey]ledger.Leg{}, legsDone: map[ledger.LegKey]ledger.TransferResult{},
		clocks: map[uint32]uint64{},
	}}
	for s := uint32(0); s < shards; s++ {
		w.books = append(w.books, ledger.NewBook(s, shards))
	}
	return w
}

func (w *world) shards() uint32 { return uint32(len(w.books)) }

// commit persists a round's effects and queues the messages they send, as a shard does after
// its batch is durable.
func (w *world) commit(shard uint32) {
	fx := &w.fx
	for _, a := range fx.Accounts { // synchronous: the accounts are as the round left them
		w.store.accounts[a.ID] = *a
	}
	for _, t := range fx.Transfers {
		w.store.transfers[t.ID] = t
	}
	w.store.postings = append(w.store.postings, fx.Postings...)
	for _, l := range fx.LegsOut {
		w.store.outbox[l.LegKey] = l
	}
	for _, l := range fx.OutboxDone {
		delete(w.store.outbox, l.LegKey)
	}
	for _, r := range fx.LegsDone {
		w.store.legsDone[r.LegKey] = r.Result
	}
	for _, k := range fx.LegsForgotten {
		delete(w.store.legsDone, k)
	}
	w.store.clocks[shard] = w.books[shard].Clock()
	for _, l := range fx.LegsOut {
		w.queue = append(w.queue, message{to: ledger.ShardOf(l.Account, w.shards()), legs: []ledger.Leg{l}})
	}
	for _, r := range fx.LegsDone {
		w.queue = append(w.queue, message{to: r.From, answers: []ledger.LegResult{r}})
	}
	for _, f := range fx.Forget {
		w.queue = append(w.queue, message{to: f.To, forget: []ledger.LegKey{f.LegKey}})
	}
	fx.Reset()
	w.books[shard].Trim()
}

// prefetch answers a book's Needs from the store, as a shard's prefetch does: a stored
// transfer is loaded whichever shard it belongs to (so that its id answers
// exists_with_different_fields on the others; the shards' id claims keep two shards from
// booking one id at once, which this world, running one shard at a time, needs no claims for).
func (w *world) prefetch(b *ledger.Book) {
	for _, id := range w.needs.Transfers {
		if t, ok := w.store.transfers[id]; ok {
			b.LoadTransfer(t)
		}
	}
	for _, id := range w.needs.Remote {
		if a, ok := w.store.accounts[id]; ok {
			b.LoadRemote(a.Info())
		}
	}
	for _, k := range w.needs.Legs {
		if r, ok := w.store.legsDone[k]; ok {
			b.LoadLegResult(ledger.LegResult{LegKey: k, Result: r})
		}
	}
	w.needs.Reset()
}

func (w *world) createAccounts(as []ledger.Account) []ledger.AccountResult {
	results := make([]ledger.AccountResult, len(as))
	for s, b := range w.books {
		var idx []int
		var part []ledger.Account
		for i := range as {
			if ledger.ShardOf(as[i].ID, w.shards()) == uint32(s) {
				idx, part = append(idx, i), append(part, as[i])
			}
		}
		if len(part) == 0 {
			continue
		}
		rs := make([]ledger.AccountResult, len(part))
		b.CreateAccounts(w.now, part, rs, &w.fx)
		w.commit(uint32(s))
		for k, i := range idx {
			results[i] = rs[k]
		}
	}
	return results
}

// createTransfers routes transfers by debit account, one round per shard, as the API does
// (including its rule that a linked chain debits accounts of one shard).
//
// The results of split transfers, and of transfers that repeat one whose leg is unanswered,
// are provisional: the shard answers them once the leg is answered (a refusal replaces ok or
// exists). w.awaits names their legs, by position.
func (w *world) createTransfers(ts []ledger.Transfer) []ledger.TransferResult {
	results := make([]ledger.TransferResult, len(ts))
	w.awaits = map[int]ledger.LegKey{}
	parts := make([][]int, w.shards())
	for i := 0; i < len(ts); {
		end := i
		for end < len(ts)-1 && ts[end].Flags&ledger.TransferLinked != 0 {
			end++
		}
		shard := ledger.ShardOf(ts[i].DebitAccountID, w.shards())
		spans := false
		for k := i; k <= end; k++ {
			if ledger.ShardOf(ts[k].DebitAccountID, w.shards()) != shard {
				spans = true
			}
		}
		for k := i; k <= end; k++ {
			if spans {
				results[k] = ledger.ResultLinkedEventFailed
				if ledger.ShardOf(ts[k].DebitAccountID, w.shards()) != shard {
					results[k] = ledger.ResultLinkedChainSpansShards
				}
				continue
			}
			parts[shard] = append(parts[shard], k)
		}
		i = end + 1
	}
	for s, idx := range parts {
		if len(idx) == 0 {
			continue
		}
		part := make([]ledger.Transfer, len(idx))
		for k, i := range idx {
			part[k] = ts[i]
		}
		b := w.books[s]
		b.NeedsForTransfers(part, &w.needs)
		w.prefetch(b)
		rs := make([]ledger.TransferResult, len(part))
		b.CreateTransfers(w.now, part, rs, &w.fx)
		for _, a := range w.fx.Awaits {
			w.awaits[idx[a.Event]] = a.LegKey
		}
		for _, l := range w.fx.LegsOut {
			if !l.Buffered && l.Event >= 0 {
				w.awaits[idx[l.Event]] = l.LegKey
			}
		}
		w.commit(uint32(s))
		for k, i := range idx {
			results[i] = rs[k]
		}
	}
	return results
}

// gather merges the queued legs bound for each shard into one message per shard, in order, as
// a hot-account buffer flush delivers them; answers keep their places.
func (w *world) gather() {
	var merged []message
	at := map[uint32]int{}
	for _, m := range w.queue {
		if len(m.legs) == 0 {
			merged = append(merged, m)
			continue
		}
		if i, ok := at[m.to]; ok {
			merged[i].legs = append(merged[i].legs, m.legs...)
			continue
		}
		at[m.to] = len(merged)
		merged = append(merged, message{to: m.to, legs: append([]ledger.Leg(nil), m.legs...)})
	}
	w.queue = merged
}

// deliver hands over up to n queued messages (all if n <= 0), each as its own round.
func (w *world) deliver(n int) int {
	done := 0
	for len(w.queue) > 0 && (n <= 0 || done < n) {
		m := w.queue[0]
		w.queue = w.queue[1:]
		b := w.books[m.to]
		switch {
		case len(m.legs) > 0:
			b.NeedsForLegs(m.legs, &w.needs)
			w.prefetch(b)
			b.ApplyLegs(w.now, m.legs, &w.fx)
		case len(m.forget) > 0:
			b.ForgetLegs(m.forget, &w.fx)
		default:
			b.ApplyLegResults(w.now, m.answers, &w.fx)
		}
		w.commit(m.to)
		done++
	}
	return done
}

func (w *world) expire() {
	for s, b := range w.books {
		b.Expire(w.now, &w.fx)
		w.commit(uint32(s))
	}
}

// crash throws away every book and the message queue, then rebuilds the books from the store
// as recovery does, and re-sends the outbox.
func (w *world) crash() {
	w.queue = nil
	for s := range w.books {
		w.books[s] = ledger.NewBook(uint32(s), w.shards())
	}
	for _, a := range w.store.accounts {
		w.books[ledger.ShardOf(a.ID, w.shards())].LoadAccount(a)
	}
	for _, t := range w.store.transfers {
		b := w.books[ledger.ShardOf(t.DebitAccountID, w.shards())]
		if t.State == ledger.StatePending {
			b.LoadTransfer(t)
		}
	}
	for _, l := range w.store.outbox {
		if t, ok := w.store.transfers[l.TransferID]; ok && t.DebitAccountID == l.DebitAccount {
			w.books[l.From].LoadTransfer(t)
		}
	}
	for s, c := range w.store.clocks {
		w.books[s].LoadClock(c)
	}
	keys := make([]ledger.LegKey, 0, len(w.store.outbox))
	for k := range w.store.outbox {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].TransferID < keys[j].TransferID ||
			keys[i].TransferID == keys[j].TransferID && keys[i].Kind < keys[j].Kind
	})
	for _, k := range keys {
		l := w.store.outbox[k]
		l.Buffered = false // not stored
		w.books[l.From].LoadOutbox(l)
		l.Redelivered = true
		w.queue = append(w.queue, message{to: ledger.ShardOf(l.Account, w.shards()), legs: []ledger.Leg{l}})
	}
}

// audit runs the invariant checks over the store and compares each book with it.
func (w *world) audit() []string {
	a := ledger.NewAudit(w.shards())
	for _, acc := range w.store.accounts {
		a.Account(acc)
	}
	for _, p := range w.store.postings {
		a.Posting(p, w.store.accounts[p.Account].Ledger)
	}
	for _, l := range w.store.outbox {
		a.Outbox(l)
	}
	for k, r := range w.store.legsDone {
		a.LegApplied(ledger.LegResult{LegKey: k, Result: r})
	}
	problems := a.Problems()
	for _, b := range w.books {
		b.Accounts(func(acc *ledger.Account) {
			if s := w.store.accounts[acc.ID]; s != *acc {
				problems = append(problems, fmt.Sprintf("account %d: book %+v, store %+v", acc.ID, *acc, s))
			}
		})
		if b.OutboxLen() != w.outboxOf(b.Shard()) {
			problems = append(problems, fmt.Sprintf("shard %d: outbox %d in memory, %d stored",
				b.Shard(), b.OutboxLen(), w.outboxOf(b.Shard())))
		}
	}
	return problems
}

func (w *world) outboxOf(shard uint32) int {
	n := 0
	for _, l := range w.store.outbox {
		if l.From == shard {
			n++
		}
	}
	return n
}

// The script language of testdata/*.

var accountFlagNames = map[string]ledger.AccountFlags{
	"debits_must_not_exceed_credits": ledger.AccountDebitsMustNotExceedCredits,
	"credits_must_not_exceed_debits": ledger.AccountCreditsMustNotExceedDebits,
	"history":                        ledger.AccountHistory,
	"closed":                         ledger.AccountClosed,
	"internal":                       ledger.AccountInternal,
	"hot":                            ledger.AccountHot,
}

var legKindNames = map[ledger.LegKind]string{
	ledger.LegCreditPost: "post", ledger.LegCreditHold: "hold",
	ledger.LegCreditPostHeld: "post_held", ledger.LegCreditRelease: "release",
}

var transferFlagNames = map[string]ledger.TransferFlags{
	"linked": ledger.TransferLinked, "pending": ledger.TransferPending,
	"post": ledger.TransferPostPending, "void": ledger.TransferVoidPending,
}

// fields parses "k=v k=v" into a map; v may not contain spaces.
func fields(t testing.TB, line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("bad field %q in %q", f, line)
		}
		m[k] = v
	}
	return m
}

func num(t testing.TB, m map[string]string, k string) uint64 {
	v, ok := m[k]
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", k, v, err)
	}
	return n
}

func parseAccount(t testing.TB, line string) ledger.Account {
	m := fields(t, line)
	a := ledger.Account{ID: num(t, m, "id"), Ledger: uint32(num(t, m, "ledger")),
		Code: uint32(num(t, m, "code")), UserData: num(t, m, "user_data"),
		Timestamp: num(t, m, "timestamp")}
	a.CreditsPosted = ledger.U128(num(t, m, "credits_posted"))
	if f := m["flags"]; f != "" {
		for _, n := range strings.Split(f, ",") {
			flag, ok := accountFlagNames[n]
			if !ok {
				flag = 1 << 15 // an unknown flag, for the validation tests
			}
			a.Flags |= flag
		}
	}
	return a
}

func parseTransfer(t testing.TB, line string) ledger.Transfer {
	m := fields(t, line)
	tr := ledger.Transfer{ID: num(t, m, "id"), DebitAccountID: num(t, m, "debit"),
		CreditAccountID: num(t, m, "credit"), Amount: num(t, m, "amount"),
		PendingID: num(t, m, "pending_id"), UserData: num(t, m, "user_data"),
		Ledger: uint32(num(t, m, "ledger")), Code: uint32(num(t, m, "code")),
		Timeout: uint32(num(t, m, "timeout")), BizID: m["biz_id"], Timestamp: num(t, m, "timestamp")}
	if v, ok := m["biz_id_len"]; ok {
		n, _ := strconv.Atoi(v)
		tr.BizID = strings.Repeat("x", n)
	}
	if f := m["flags"]; f != "" {
		for _, n := range strings.Split(f, ",") {
			flag, ok := transferFlagNames[n]
			if !ok {
				t.Fatalf("unknown transfer flag %q", n)
			}
			tr.Flags |= flag
		}
	}
	return tr
}

func formatBalance(b ledger.Balance) string {
	return fmt.Sprintf("dr_pending=%v dr_posted=%v cr_pending=%v cr_posted=%v",
		b.DebitsPending, b.DebitsPosted, b.CreditsPending, b.CreditsPosted)
}

var stateNames = map[ledger.TransferState]string{
	ledger.StatePosted: "posted", ledger.StatePending: "pending",
	ledger.StatePendingPosted: "pending_posted", ledger.StatePendingVoided: "pending_voided",
	ledger.StatePendingExpired: "pending_expired", ledger.StateFailed: "failed",
	ledger.StateInFlight: "in_flight",
}

func lines(input string) []string {
	var out []string
	for _, l := range strings.Split(input, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}
