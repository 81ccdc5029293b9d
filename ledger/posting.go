package ledger

// PostingOp says which balance fields one posting moves.
type PostingOp uint8

const (
	OpDebitPost      PostingOp = 1 + iota // DebitsPosted += Amount
	OpDebitHold                           // DebitsPending += Amount
	OpDebitPostHeld                       // DebitsPending -= Held; DebitsPosted += Amount
	OpDebitRelease                        // DebitsPending -= Amount
	OpCreditPost                          // CreditsPosted += Amount
	OpCreditHold                          // CreditsPending += Amount
	OpCreditPostHeld                      // CreditsPending -= Held; CreditsPosted += Amount
	OpCreditRelease                       // CreditsPending -= Amount
	opLast
)

// Valid reports whether op is one of the known operations.
func (op PostingOp) Valid() bool { return op >= OpDebitPost && op < opLast }

// Mirror is the operation on the other side of the same movement: the transit account's
// posting for a split leg.
func (op PostingOp) Mirror() PostingOp {
	if op >= OpCreditPost {
		return op - 4
	}
	return op + 4
}

// Posting is one movement on one account: the journal entry from which its balance is
// recomputed. Every transfer makes one posting per account it touches; a split leg's
// counter-posting on the shard's transit account is implied by Split.
type Posting struct {
	Account    uint64
	Timestamp  uint64
	TransferID uint64
	Amount     uint64
	Held       uint64 // for the PostHeld operations: the pending amount released
	// Day is the accounting day the posting belongs to, fixed when it is written: the day
	// of its transfer's debit side (Book.SwitchDay); 0 for postings older than days.
	Day     Day
	Op      PostingOp
	Split   bool    // the other side is this shard's transit account
	History bool    // the account is flagged history (GetAccountBalances shows its postings)
	After   Balance // the account's balance right after this posting: its latest posting's
	// After is the account's balance
}

// Apply moves b by the operation; it reports false, leaving b unchanged, if that would
// overflow or underflow a field.
func (op PostingOp) Apply(b *Balance, amount, held uint64) bool {
	switch op {
	case OpDebitPost:
		return add(&b.DebitsPosted, amount)
	case OpDebitHold:
		return add(&b.DebitsPending, amount)
	case OpDebitPostHeld:
		return moveHeld(&b.DebitsPending, &b.DebitsPosted, held, amount)
	case OpDebitRelease:
		return sub(&b.DebitsPending, amount)
	case OpCreditPost:
		return add(&b.CreditsPosted, amount)
	case OpCreditHold:
		return add(&b.CreditsPending, amount)
	case OpCreditPostHeld:
		return moveHeld(&b.CreditsPending, &b.CreditsPosted, held, amount)
	case OpCreditRelease:
		return sub(&b.CreditsPending, amount)
	}
	return false
}

func add(f *Uint128, amount uint64) bool {
	v, ok := f.Add64(amount)
	*f = v
	return ok
}

func sub(f *Uint128, amount uint64) bool {
	v, ok := f.Sub64(amount)
	*f = v
	return ok
}

func moveHeld(pending, posted *Uint128, held, amount uint64) bool {
	if amount > held {
		return false
	}
	p, ok := pending.Sub64(held)
	if !ok {
		return false
	}
	q, ok := posted.Add64(amount)
	if !ok {
		return false
	}
	*pending, *posted = p, q
	return true
}

// sum3 returns a+b+c and whether it overflowed.
func sum3(a, b Uint128, c uint64) (Uint128, bool) {
	s, ok1 := a.Add(b)
	s, ok2 := s.Add64(c)
	return s, !(ok1 && ok2)
}
