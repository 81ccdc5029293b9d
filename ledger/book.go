package ledger

import (
	"cmp"
	"container/heap"
	"fmt"
	"slices"
)

// Book is the state of one shard: the accounts it owns, its transit accounts, the transfers
// whose debit account it owns (pending ones always, finished ones as a bounded cache), the
// outbox of credit legs it has sent and not yet seen answered, and what it knows of accounts
// on other shards. It is not safe for concurrent use: one shard actor owns it.
//
// A caller drives it in rounds: Needs (what to read from storage), Load* (the answers),
// Create*/ApplyLegs/ApplyLegResults/Expire (which fill Effects), persist Effects, then Trim.
type Book struct {
	shard, shards uint32

	accounts  accountArena
	transfers transferCache // every pending transfer is in it
	remote    map[uint64]AccountInfo
	outbox    map[LegKey]Leg
	holding   map[uint64]struct{}       // pending transfers whose hold leg is unanswered
	legs      map[LegKey]TransferResult // legs applied here since the last Trim
	expiries  expiryHeap
	parked    map[uint64]expiry   // due expiries of holds whose leg is unanswered
	elsewhere map[uint64]struct{} // ids another shard is booking (LoadClaimedElsewhere)

	clock     uint64 // the last timestamp handed out
	day       Day    // the accounting day of the postings this shard makes (SwitchDay)
	recording bool   // inside a linked chain: keep undo entries
	cacheMax  int    // transfers (and applied legs) kept in memory before Trim forgets them
	pinned    int    // transfers the last Trim had to keep (pins)
	// expiriesCompactAt: the heap size at which Trim drops the expiries of resolved holds.
	expiriesCompactAt int
	event             int32  // the position, in the batch being run, of the event being run
	epoch             uint64 // which Effects an account was last added to
	undo              []undoEntry
	warmFrom          uint32   // the accounts from which warm reads ahead (warmAccountsMin)
	warmAt            []uint32 // warm's scratch: where the accounts it reads are
	warmSum           uint64   // what warm read, kept so that the reads are not optimized away
	warmWindows       int      // how many windows warm read ahead (tests)
}

type accountState struct {
	Account
	epoch uint64
}

// NewBook returns an empty book for shard of shards.
func NewBook(shard, shards uint32) *Book {
	if shards == 0 || shards > ShardsMax || shard >= shards {
		panic(fmt.Sprintf("ledger: shard %d of %d", shard, shards))
	}
	return &Book{
		shard: shard, shards: shards,
		accounts:          newAccountArena(),
		transfers:         newTransferCache(),
		remote:            make(map[uint64]AccountInfo),
		outbox:            make(map[LegKey]Leg),
		holding:           make(map[uint64]struct{}),
		legs:              make(map[LegKey]TransferResult),
		parked:            make(map[uint64]expiry),
		elsewhere:         make(map[uint64]struct{}),
		expiriesCompactAt: expiriesCompactMin,
		cacheMax:          TransferCacheEntriesMax,
		warmFrom:          warmAccountsMin,
	}
}

// SetCacheLimit sets how many finished transfers the book keeps in memory (default
// TransferCacheEntriesMax); pending ones are always kept. It sizes the cache's index to hold
// twice as many without growing (transferCache.reserve).
func (b *Book) SetCacheLimit(n int) {
	if n < 1 {
		panic(fmt.Sprintf("ledger: cache limit %d", n))
	}
	b.cacheMax = n
	b.transfers.reserve(2 * n) // what it holds before a Trim with few holds (transfersRoom)
}

// Shard is the shard this book belongs to.
func (b *Book) Shard() uint32 { return b.shard }

// Owns reports whether the account lives on this shard.
func (b *Book) Owns(id uint64) bool { return ShardOf(id, b.shards) == b.shard }

// Clock is the last timestamp the book handed out.
func (b *Book) Clock() uint64 { return b.clock }

// tick hands out the next timestamp: now, or one past the last one if the clock stood still or
// went back. Timestamps of one shard are strictly increasing whatever the wall clock does.
func (b *Book) tick(now uint64) uint64 {
	if now <= b.clock {
		now = b.clock + 1
	}
	b.clock = now
	return now
}

// Day is the shard's accounting day: the day of the postings it makes now.
func (b *Book) Day() Day { return b.day }

// LoadDay sets the shard's accounting day as stored (recovery, or the store's first day).
func (b *Book) LoadDay(d Day) { b.day = d }

// SwitchDay makes d the day of every posting this shard makes from now on, at a point of
// its serialized stream, and records the switch in fx (DayStart) to be stored with the
// round. Credit legs and answers that arrive later for transfers of an earlier day are
// still booked on their transfer's day (Leg.Day). d must be later than the current day.
func (b *Book) SwitchDay(d Day, fx *Effects) {
	if d <= b.day || !d.Valid() {
		panic(fmt.Sprintf("ledger: INVARIANT: shard %d switching from day %v to %v", b.shard, b.day, d))
	}
	b.begin(fx)
	b.day = d
	fx.Days = append(fx.Days, DayStart{Day: d, Clock: b.clock})
}

// LoadClock makes every later timestamp greater than ts (recovery).
func (b *Book) LoadClock(ts uint64) {
	if ts > b.clock {
		b.clock = ts
	}
}

// LoadAccount puts a stored account (or transit account) of this shard into the book.
func (b *Book) LoadAccount(a Account) {
	if !b.Owns(a.ID) {
		panic(fmt.Sprintf("ledger: shard %d loading account %d of shard %d", b.shard, a.ID,
			ShardOf(a.ID, b.shards)))
	}
	b.accounts.put(accountState{Account: a})
	b.LoadClock(a.Timestamp)
}

// LoadTransfer puts a stored transfer into the cache, arming its expiry if it is a hold on
// this shard. A transfer of another shard with an id this shard is asked about is loaded too,
// so that re-using its id answers exists_with_different_fields.
func (b *Book) LoadTransfer(t Transfer) {
	if b.transfers.has(t.ID) {
		return
	}
	b.transfers.set(t)
	if !b.Owns(t.DebitAccountID) {
		return // another shard's transfer with this id: known only to answer exists checks
	}
	if t.holds() && t.ExpiresAt() != 0 {
		heap.Push(&b.expiries, expiry{at: t.ExpiresAt(), id: t.ID})
	}
	b.LoadClock(t.Timestamp)
}

// LoadClaimedElsewhere records that another shard is booking a transfer with this id: a
// transfer here with the same id answers id_in_flight, which the caller retries.
func (b *Book) LoadClaimedElsewhere(id uint64) { b.elsewhere[id] = struct{}{} }

// ForgetClaimedElsewhere undoes LoadClaimedElsewhere once the transfers it was for have run:
// the other shard may yet fail to book the id, and then the id is free again.
func (b *Book) ForgetClaimedElsewhere(id uint64) { delete(b.elsewhere, id) }

// LoadRemote records what never changes of an account on another shard. The cache is bounded
// by Trim, never here: a batch's transfers rely on what was loaded for them until they run.
func (b *Book) LoadRemote(info AccountInfo) { b.remote[info.ID] = info }

// LoadOutbox puts a stored, unanswered leg back into the outbox (recovery).
func (b *Book) LoadOutbox(l Leg) {
	b.outbox[l.LegKey] = l
	if l.Kind == LegCreditHold {
		b.holding[l.TransferID] = struct{}{}
	}
}

// LoadLegResult records that a leg was already applied here, with its result (for a leg
// delivered again).
func (b *Book) LoadLegResult(r LegResult) { b.legs[r.LegKey] = r.Result }

// Account returns a copy of an account of this shard.
func (b *Book) Account(id uint64) (Account, bool) {
	a, ok := b.accounts.get(id)
	if !ok {
		return Account{}, false
	}
	return a.Account, true
}

// Accounts calls fn for every account of this shard, transit accounts included.
func (b *Book) Accounts(fn func(a *Account)) {
	b.accounts.each(func(a *accountState) { fn(&a.Account) })
}

// Transfer returns a cached transfer.
func (b *Book) Transfer(id uint64) (Transfer, bool) {
	return b.transfers.get(id)
}

// Outbox calls fn for every unanswered leg, in key order (a run replays).
func (b *Book) Outbox(fn func(l Leg)) {
	keys := make([]LegKey, 0, len(b.outbox))
	for k := range b.outbox {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y LegKey) int {
		return cmp.Or(cmp.Compare(x.TransferID, y.TransferID), cmp.Compare(x.Kind, y.Kind))
	})
	for _, k := range keys {
		fn(b.outbox[k])
	}
}

// LegApplied returns this shard's record of a leg it applied (its answer), if it has one in
// memory (a record only in storage is loaded by NeedsForLegs).
func (b *Book) LegApplied(k LegKey) (TransferResult, bool) {
	r, ok := b.legs[k]
	return r, ok
}

// OutboxLeg returns an unanswered leg.
func (b *Book) OutboxLeg(k LegKey) (Leg, bool) {
	l, ok := b.outbox[k]
	return l, ok
}

// OutboxLen is the number of unanswered legs.
func (b *Book) OutboxLen() int { return len(b.outbox) }

// Needs is what the book must be told before it can run a batch of transfers: the stored
// transfers (ids and pending ids not in its cache) and the accounts of other shards it does not
// know. Absent from storage means absent.
type Needs struct {
	Transfers []uint64
	Remote    []uint64
	Legs      []LegKey
}

// Reset empties n for reuse.
func (n *Needs) Reset() {
	n.Transfers, n.Remote, n.Legs = n.Transfers[:0], n.Remote[:0], n.Legs[:0]
}

// NeedsForTransfers adds to n what CreateTransfers(ts) will look up.
func (b *Book) NeedsForTransfers(ts []Transfer, n *Needs) {
	for i := range ts {
		t := &ts[i]
		if t.ID != 0 && !b.transfers.has(t.ID) {
			n.Transfers = append(n.Transfers, t.ID)
		}
		if t.PendingID != 0 {
			if !b.transfers.has(t.PendingID) {
				n.Transfers = append(n.Transfers, t.PendingID)
			}
		}
		c := t.CreditAccountID
		if c != 0 && c < TransitIDMin && !b.Owns(c) {
			if _, ok := b.remote[c]; !ok {
				n.Remote = append(n.Remote, c)
			}
		}
	}
}

// NeedsForLegs adds to n the delivery records of legs that may have been applied before:
// those sent again (Leg.Redelivered). A leg's first sending is applied at most once only if
// its message is: the host must drop a message delivered twice, or mark the legs of a message
// it cannot tell as Redelivered (ledger/driver does both).
func (b *Book) NeedsForLegs(legs []Leg, n *Needs) {
	for i := range legs {
		if legs[i].Redelivered {
			if _, ok := b.legs[legs[i].LegKey]; !ok {
				n.Legs = append(n.Legs, legs[i].LegKey)
			}
		}
	}
}

// TrimNeeded reports whether the book has outgrown its limits and wants a Trim soon.
// The transfers Trim must keep (pinned) do not count: with more open holds than the limit,
// every round would otherwise ask for a Trim that frees nothing. And they make room for as
// many more: a book that keeps many holds trims once as many new transfers came, not every
// cacheMax, each Trim scanning them all (new holds count as new until the next Trim).
func (b *Book) TrimNeeded() bool {
	return b.transfers.len() > b.transfersRoom() || len(b.legs) > b.cacheMax ||
		len(b.remote) > RemoteAccountCacheEntriesMax || len(b.expiries) > b.expiriesCompactAt
}

// transfersRoom is how many transfers the book holds before Trim scans them: what the last
// Trim had to keep, and as many more, or cacheMax more if that is larger.
func (b *Book) transfersRoom() int { return b.pinned + max(b.cacheMax, b.pinned) }

// Trim forgets what the book may look up again in storage, keeping it within its limits. Call
// it only when every round's Effects are durable and no round is being built: what it forgets
// must be in storage.
func (b *Book) Trim() {
	clear(b.legs)
	if len(b.remote) > RemoteAccountCacheEntriesMax {
		clear(b.remote)
	}
	if len(b.expiries) > b.expiriesCompactAt {
		b.compactExpiries()
	}
	if b.transfers.len() <= b.transfersRoom() {
		return
	}
	// The few kept (as many as the last Trim kept, as a guess) are moved to the slab's front
	// and indexed again; many (over a quarter: open holds) stay where they are, and the others
	// are removed one by one.
	b.pinned = b.transfers.keep(b.pins, 4*b.pinned <= b.transfers.len())
}

// compactExpiries drops the armed expiries of holds that were posted, voided or undone: each
// stays in the heap until it comes due otherwise, which may be years for a long hold that was
// captured at once. The heap is rebuilt when it has doubled since the last time.
func (b *Book) compactExpiries() {
	kept := b.expiries[:0]
	for _, e := range b.expiries {
		if t, ok := b.transfers.get(e.id); ok && t.holds() && t.ExpiresAt() == e.at {
			kept = append(kept, e)
		}
	}
	clear(b.expiries[len(kept):])
	b.expiries = kept
	heap.Init(&b.expiries)
	b.expiriesCompactAt = max(2*len(kept), expiriesCompactMin)
}

// expiriesCompactMin is the fewest armed expiries at which the heap is compacted.
const expiriesCompactMin = 1024

// pins reports whether the book must keep a transfer in memory: one of its own that is
// pending or in flight, or whose leg's answer needs it. Another shard's transfer, loaded only
// to answer exists_with_different_fields, is never needed.
func (b *Book) pins(t *Transfer) bool {
	if !b.Owns(t.DebitAccountID) {
		return false
	}
	return t.State == StatePending || t.State == StateInFlight || b.legOutstanding(t.ID)
}

// Effects is what one round of the book asks its caller to persist and send. Reuse one value
// across rounds (Reset keeps the capacity).
type Effects struct {
	epoch      uint64
	Accounts   []*Account // accounts whose balances (or existence) changed: write each once
	Frozen     []Account  // transit accounts as they were when the round was sealed (Freeze)
	frozen     bool
	Opened     []Account   // accounts opened in the round, as opened
	Transfers  []Transfer  // transfer records to write (a later entry for the same id wins)
	Postings   []Posting   // journal entries, one per account per movement
	LegsOut    []Leg       // legs to write to the outbox and send after the commit
	LegsDone   []LegResult // legs applied here: record them, and answer their senders
	OutboxDone []Leg       // answered legs to delete from the outbox
	Answered   []LegResult // answered legs, for the requests that wait on them
	// Awaits: events of the round that repeat a transfer whose leg is unanswered, and answer
	// when it is (LegAwait).
	Awaits []LegAwait
	// Forget: once OutboxDone is durable, tell each leg's credit shard to delete its record.
	Forget []LegForget
	// LegsForgotten: records of applied legs to delete (their senders will not send again).
	LegsForgotten []LegKey
	// Days: the accounting days the shard switched to in the round (SwitchDay), to store.
	Days []DayStart
}

// DayStart records that a shard switched to an accounting day: every posting the shard
// writes afterwards has a timestamp above Clock, and every posting it makes itself (not a
// credit leg's or an answer's, which carry their transfer's day) is of Day or later.
type DayStart struct {
	Day   Day
	Clock uint64
}

// Reset empties fx for the next round.
func (fx *Effects) Reset() {
	fx.Accounts = fx.Accounts[:0]
	fx.Frozen = fx.Frozen[:0]
	fx.frozen = false
	fx.Opened = fx.Opened[:0]
	fx.Transfers = fx.Transfers[:0]
	fx.Postings = fx.Postings[:0]
	fx.LegsOut = fx.LegsOut[:0]
	fx.LegsDone = fx.LegsDone[:0]
	fx.OutboxDone = fx.OutboxDone[:0]
	fx.Answered = fx.Answered[:0]
	fx.Awaits = fx.Awaits[:0]
	fx.Forget = fx.Forget[:0]
	fx.LegsForgotten = fx.LegsForgotten[:0]
	fx.Days = fx.Days[:0]
	fx.epoch = 0
}

// effectsMark is how far a round's Effects had grown, to undo a linked chain's.
type effectsMark struct{ transfers, postings, legsOut, awaits int }

func (fx *Effects) mark() effectsMark {
	return effectsMark{len(fx.Transfers), len(fx.Postings), len(fx.LegsOut), len(fx.Awaits)}
}

// truncate drops what was added since m (the accounts touched stay: they are written with
// their restored balances).
func (fx *Effects) truncate(m effectsMark) {
	fx.Transfers, fx.Postings = fx.Transfers[:m.transfers], fx.Postings[:m.postings]
	fx.LegsOut, fx.Awaits = fx.LegsOut[:m.legsOut], fx.Awaits[:m.awaits]
}

// Freeze ends the round: it copies the round's transit accounts as they are now, because the
// book goes on changing them in later rounds while this one is written. (A client account's
// balance travels in its postings, which are copies already.)
func (fx *Effects) Freeze() {
	fx.Frozen = fx.Frozen[:0]
	for _, a := range fx.Accounts {
		if a.ID >= TransitIDMin {
			fx.Frozen = append(fx.Frozen, *a)
		}
	}
	fx.frozen = true
}

// IsFrozen reports whether Freeze ended the round.
func (fx *Effects) IsFrozen() bool { return fx.frozen }

// Empty reports whether the round changed nothing.
func (fx *Effects) Empty() bool {
	return len(fx.Accounts) == 0 && len(fx.Transfers) == 0 && len(fx.LegsDone) == 0 &&
		len(fx.OutboxDone) == 0 && len(fx.LegsOut) == 0 && len(fx.LegsForgotten) == 0 && len(fx.Days) == 0
}

// begin ties fx to a round of b.
func (b *Book) begin(fx *Effects) {
	if fx.epoch == 0 {
		b.epoch++
		fx.epoch = b.epoch
	}
}

func (b *Book) touch(a *accountState, fx *Effects) {
	if a.epoch != fx.epoch {
		a.epoch = fx.epoch
		fx.Accounts = append(fx.Accounts, &a.Account)
	}
}

// post applies op to a and journals it. The caller has checked that it fits: a failure here
// is a broken invariant.
func (b *Book) post(a *accountState, p Posting, fx *Effects) {
	b.saveAccount(a)
	if !p.Op.Apply(&a.Balance, p.Amount, p.Held) {
		panic(fmt.Sprintf("ledger: INVARIANT: posting %v of %d (held %d, transfer %d) does not fit account %d %+v",
			p.Op, p.Amount, p.Held, p.TransferID, a.ID, a.Balance))
	}
	p.Account = a.ID
	if p.Day == 0 {
		p.Day = b.day
	}
	p.History = a.Flags&AccountHistory != 0
	p.After = a.Balance
	fx.Postings = append(fx.Postings, p)
	b.touch(a, fx)
}

// transit returns this shard's transit account for ledger, opening it on first use.
func (b *Book) transit(ledger uint32, ts uint64, fx *Effects) *accountState {
	id := TransitAccountID(b.shard, ledger)
	if a, ok := b.accounts.get(id); ok {
		return a
	}
	a := b.accounts.put(accountState{Account: Account{ID: id, Ledger: ledger, Code: 0, Timestamp: ts}})
	b.touch(a, fx)
	return a
}

// CreateAccounts opens accounts of this shard. results[i] is set for every ts[i].
func (b *Book) CreateAccounts(now uint64, as []Account, results []AccountResult, fx *Effects) {
	b.begin(fx)
	for i := range as {
		results[i] = b.createAccount(now, &as[i], fx)
	}
	b.undo = b.undo[:0]
}

func (b *Book) createAccount(now uint64, a *Account, fx *Effects) AccountResult {
	if r := ValidateAccount(a); r != AccountResultOK {
		return r
	}
	if s, ok := b.accounts.get(a.ID); ok {
		if s.Ledger != a.Ledger || s.Code != a.Code || s.Flags != a.Flags || s.UserData != a.UserData {
			return AccountResultExistsWithDifferentFields
		}
		return AccountResultExists
	}
	if !b.Owns(a.ID) {
		panic(fmt.Sprintf("ledger: account %d routed to shard %d", a.ID, b.shard))
	}
	s := b.accounts.put(accountState{Account: *a})
	s.Timestamp = b.tick(now)
	b.touch(s, fx)
	fx.Opened = append(fx.Opened, s.Account)
	return AccountResultOK
}

// ValidateAccount runs the checks that need no state, in order.
func ValidateAccount(a *Account) AccountResult {
	switch {
	case a.ID == 0:
		return AccountResultIDMustNotBeZero
	case a.ID >= TransitIDMin:
		return AccountResultIDReserved
	case a.Flags&^accountFlagsKnown != 0,
		a.Flags&AccountDebitsMustNotExceedCredits != 0 && a.Flags&AccountCreditsMustNotExceedDebits != 0:
		return AccountResultFlagsAreMutuallyExclusive
	case a.Flags&AccountHot != 0 && a.Flags&AccountInternal == 0 && a.Flags&AccountDebitsMustNotExceedCredits != 0:
		return AccountResultHotCustomerMustAllowOverdraft
	case a.Flags&AccountHot != 0 && a.Flags&AccountCreditsMustNotExceedDebits != 0:
		return AccountResultHotMustNotLimitCredits
	case a.Balance != Balance{}:
		return AccountResultBalancesMustBeZero
	case a.Timestamp != 0:
		return AccountResultTimestampMustBeZero
	case a.Ledger == 0:
		return AccountResultLedgerMustNotBeZero
	case a.Code == 0:
		return AccountResultCodeMustNotBeZero
	}
	return AccountResultOK
}

// expiry is a pending transfer's timeout; the heap orders them soonest first.
type expiry struct {
	at uint64
	id uint64
}

type expiryHeap []expiry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].id < h[j].id
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// NextExpiry is when the soonest pending transfer expires (0: none is armed).
func (b *Book) NextExpiry() uint64 {
	if len(b.expiries) == 0 {
		return 0
	}
	return b.expiries[0].at
}
