package ledger

// Movement is what postings did to an account's balance over some time: how much each of the
// four totals went up (In) and down (Out). Posted totals only go up; pending ones go up when
// an amount is held and down when it is posted or released.
type Movement struct {
	In, Out Balance
}

// Add counts a posting on its own account.
func (m *Movement) Add(p *Posting) bool { return m.add(p.Op, p.Amount, p.Held) }

// AddMirror counts a split posting's other side, on its shard's transit account.
func (m *Movement) AddMirror(p *Posting) bool { return m.add(p.Op.Mirror(), p.Amount, p.Held) }

func (m *Movement) add(op PostingOp, amount, held uint64) bool {
	switch op {
	case OpDebitPost:
		return add(&m.In.DebitsPosted, amount)
	case OpDebitHold:
		return add(&m.In.DebitsPending, amount)
	case OpDebitPostHeld:
		return add(&m.Out.DebitsPending, held) && add(&m.In.DebitsPosted, amount)
	case OpDebitRelease:
		return add(&m.Out.DebitsPending, amount)
	case OpCreditPost:
		return add(&m.In.CreditsPosted, amount)
	case OpCreditHold:
		return add(&m.In.CreditsPending, amount)
	case OpCreditPostHeld:
		return add(&m.Out.CreditsPending, held) && add(&m.In.CreditsPosted, amount)
	case OpCreditRelease:
		return add(&m.Out.CreditsPending, amount)
	}
	return false
}

// Merge adds o to m.
func (m *Movement) Merge(o *Movement) bool {
	ok := true
	for _, f := range [...]struct{ dst, v *Uint128 }{
		{&m.In.DebitsPending, &o.In.DebitsPending}, {&m.In.DebitsPosted, &o.In.DebitsPosted},
		{&m.In.CreditsPending, &o.In.CreditsPending}, {&m.In.CreditsPosted, &o.In.CreditsPosted},
		{&m.Out.DebitsPending, &o.Out.DebitsPending}, {&m.Out.DebitsPosted, &o.Out.DebitsPosted},
		{&m.Out.CreditsPending, &o.Out.CreditsPending}, {&m.Out.CreditsPosted, &o.Out.CreditsPosted}} {
		v, fits := f.dst.Add(*f.v)
		*f.dst, ok = v, ok && fits
	}
	return ok
}

// Forward is b moved by m (b + In - Out); false if a total would pass 2^128 or go below 0.
func (m *Movement) Forward(b Balance) (Balance, bool) { return shift(b, &m.In, &m.Out) }

// Back is b before m (b - In + Out): the balance m started from.
func (m *Movement) Back(b Balance) (Balance, bool) { return shift(b, &m.Out, &m.In) }

func shift(b Balance, plus, minus *Balance) (Balance, bool) {
	ok := true
	f := func(v, p, q Uint128) Uint128 {
		s, fits := v.Add(p)
		r, pos := s.Sub(q)
		ok = ok && fits && pos
		return r
	}
	return Balance{DebitsPending: f(b.DebitsPending, plus.DebitsPending, minus.DebitsPending),
		DebitsPosted:   f(b.DebitsPosted, plus.DebitsPosted, minus.DebitsPosted),
		CreditsPending: f(b.CreditsPending, plus.CreditsPending, minus.CreditsPending),
		CreditsPosted:  f(b.CreditsPosted, plus.CreditsPosted, minus.CreditsPosted)}, ok
}

// DayOf says which accounting day's movements a stored posting counts in, for the end of
// day of day: its own day, except that on a store's first day (no earlier closing to open
// from) the postings of no day (older than days) and of earlier days count in it too.
func DayOf(p *Posting, day Day, first bool) Day {
	if first && p.Day < day {
		return day
	}
	return p.Day
}
