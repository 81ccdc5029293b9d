package ledger

// AccountFlags are fixed when an account is opened.
type AccountFlags uint16

const (
	// AccountDebitsMustNotExceedCredits: debits (posted plus pending) never exceed posted credits.
	AccountDebitsMustNotExceedCredits AccountFlags = 1 << iota
	// AccountCreditsMustNotExceedDebits: credits (posted plus pending) never exceed posted debits.
	AccountCreditsMustNotExceedDebits
	// AccountHistory keeps the balance after every posting.
	AccountHistory
	// AccountClosed takes no new postings.
	AccountClosed
	// AccountInternal marks an account of the platform itself (fees, settlement, channel
	// receivables), as opposed to a customer's or merchant's.
	AccountInternal
	// AccountHot takes posted inflows from other shards through buffers: the debit shard
	// replies once its side is durable and delivers the credits in aggregated batches (see
	// Leg.Buffered). Customer accounts post in real time, so a hot account must be internal or
	// allow overdraft (no debits_must_not_exceed_credits), and it may not limit its credits.
	AccountHot

	accountFlagsKnown = AccountDebitsMustNotExceedCredits | AccountCreditsMustNotExceedDebits |
		AccountHistory | AccountClosed | AccountInternal | AccountHot
)

// Balance is the four running totals of an account, in minor units. They are 128-bit so that
// they never overflow (see Uint128); a transfer's amount is 64-bit.
type Balance struct {
	DebitsPending  Uint128
	DebitsPosted   Uint128
	CreditsPending Uint128
	CreditsPosted  Uint128
}

// Account is a ledger account. ID, Ledger, Code, Flags and UserData never change after it is
// opened; Balance changes only through postings.
type Account struct {
	ID        uint64
	UserData  uint64
	Timestamp uint64
	Ledger    uint32
	Code      uint32
	Flags     AccountFlags
	Balance
}

// AccountInfo is the part of an account that never changes: what a shard needs to know of an
// account that lives on another shard.
type AccountInfo struct {
	ID     uint64
	Ledger uint32
	Flags  AccountFlags
}

// Info returns the immutable part of the account.
func (a *Account) Info() AccountInfo { return AccountInfo{ID: a.ID, Ledger: a.Ledger, Flags: a.Flags} }

// TransferFlags choose the kind of a transfer.
type TransferFlags uint16

const (
	// TransferLinked: this transfer and the next succeed or fail together.
	TransferLinked TransferFlags = 1 << iota
	// TransferPending holds the amount (two-phase).
	TransferPending
	// TransferPostPending posts (part of) the pending transfer PendingID.
	TransferPostPending
	// TransferVoidPending releases the pending transfer PendingID.
	TransferVoidPending

	transferFlagsKnown = TransferLinked | TransferPending | TransferPostPending | TransferVoidPending
)

// TransferState is where a transfer stands. The numbers are those of the wire contract.
type TransferState uint8

const (
	StatePosted         TransferState = 1
	StatePending        TransferState = 2
	StatePendingPosted  TransferState = 3
	StatePendingVoided  TransferState = 4
	StatePendingExpired TransferState = 5
	// StateFailed: the transfer was refused by a check on the ledger's state (see
	// TransferResult.Burns); Result holds why. Nothing of it moved (a split transfer's hold on
	// its debit account was released), and its id is taken: the same request answers Result
	// again.
	StateFailed TransferState = 6
	// StateInFlight: a split transfer whose credit account may still refuse it (it limits its
	// credits) and has not answered yet. Its amount is held on the debit account. It ends as
	// StatePosted (or StatePending for a hold) or StateFailed.
	StateInFlight TransferState = 7
)

// Transfer moves Amount from the debit account to the credit account. The client chooses ID
// (the idempotency key) and every field up to BizID; the ledger sets Timestamp, State and, for
// failed transfers, Result. For a post or void, Amount is what the request asked (0: the whole
// hold) until the ledger stores it as the amount actually moved.
type Transfer struct {
	ID              uint64
	DebitAccountID  uint64
	CreditAccountID uint64
	Amount          uint64
	PendingID       uint64
	UserData        uint64
	Ledger          uint32
	Code            uint32
	Timeout         uint32 // seconds; only for pending transfers; 0 never expires
	Flags           TransferFlags
	BizID           string

	Timestamp uint64
	State     TransferState
	Result    TransferResult // why a failed transfer failed; 0 otherwise
}

// sameRequest reports whether t carries the same client fields as the stored transfer s. For
// a post or void, an amount of 0 asks for the whole hold, so it is the same request as the
// hold's amount (hold: the hold's amount, 0 when unknown); a stored post or void that
// succeeded holds the amount it moved.
func (t *Transfer) sameRequest(s *Transfer, hold uint64) bool {
	amount, stored := t.Amount, s.Amount
	if t.Flags&(TransferPostPending|TransferVoidPending) != 0 && hold != 0 {
		if amount == 0 {
			amount = hold
		}
		if stored == 0 {
			stored = hold
		}
	}
	return amount == stored && t.ID == s.ID && t.DebitAccountID == s.DebitAccountID &&
		t.CreditAccountID == s.CreditAccountID && t.PendingID == s.PendingID &&
		t.UserData == s.UserData && t.Ledger == s.Ledger && t.Code == s.Code &&
		t.Timeout == s.Timeout && t.Flags == s.Flags && t.BizID == s.BizID
}

// holds reports whether t is a hold that is, or may become, pending: its expiry is armed.
func (t *Transfer) holds() bool {
	return t.Flags&TransferPending != 0 && (t.State == StatePending || t.State == StateInFlight)
}

// ExpiresAt is the timestamp at which a pending transfer expires; 0 if it never does.
func (t *Transfer) ExpiresAt() uint64 {
	if t.Flags&TransferPending == 0 || t.Timeout == 0 {
		return 0
	}
	return t.Timestamp + uint64(t.Timeout)*nanosPerSecond
}

const nanosPerSecond = 1_000_000_000
