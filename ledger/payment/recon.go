package payment

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/ledgercore/ledger/ledger"
)

// DiffKind is the kind of a disagreement Reconcile finds.
type DiffKind string

// The kinds of Difference.
const (
	// DiffMissing: a step the order holds for durable has no transfer in the ledger.
	DiffMissing DiffKind = "missing"
	// DiffFields: the ledger's transfer of a step is not what the order builds for it.
	DiffFields DiffKind = "fields"
	// DiffUnmatched: a ledger transfer carrying the biz id that no order's durable step
	// accounts for.
	DiffUnmatched DiffKind = "unmatched"
	// DiffState: a transfer's state does not agree with its order's (a succeeded order's hold
	// not posted, a failed order's hold not voided, something of a failed order posted).
	DiffState DiffKind = "state"
	// DiffAmount: what a succeeded order's postings moved is not the order's amount.
	DiffAmount DiffKind = "amount"
	// DiffChannel: the order and what its channel request decided do not agree (no channel
	// transaction, another amount paid without a record saying so).
	DiffChannel DiffKind = "channel"
	// DiffException: an exception record and its suspense postings do not agree.
	DiffException DiffKind = "exception"
)

// Difference is one disagreement between a biz id's payment orders, their channel requests and
// the ledger transfers carrying the biz id. Order, Step and Transfer are 0 where they do not
// apply.
type Difference struct {
	Kind     DiffKind
	Order    uint64
	Step     int
	Transfer uint64
	Expected string
	Found    string
}

func (d Difference) String() string {
	var b strings.Builder
	b.WriteString(string(d.Kind))
	if d.Order != 0 {
		fmt.Fprintf(&b, " order %d", d.Order)
	}
	if d.Step != 0 {
		fmt.Fprintf(&b, " step %d", d.Step)
	}
	if d.Transfer != 0 {
		fmt.Fprintf(&b, " transfer %d", d.Transfer)
	}
	fmt.Fprintf(&b, ": expected %s, found %s", d.Expected, d.Found)
	return b.String()
}

func compareDiff(a, b Difference) int {
	return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Step, b.Step), cmp.Compare(a.Transfer, b.Transfer),
		cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Expected, b.Expected), cmp.Compare(a.Found, b.Found))
}

// Reconcile checks one biz id: its payment orders (as durable), what their channel requests
// decided (as recorded on them), and every durable ledger transfer carrying the biz id agree
// in count, amount and state. It returns every disagreement, sorted by order, step, transfer,
// kind; none when they agree. It reads nothing but its arguments.
//
// A transfer of a step the order does not hold for durable is not a difference when the
// ledger refused it (it moved nothing) or when the order is still in flight and the transfer is
// the one it builds (the order's answer is not durable yet).
func Reconcile(s *Setup, orders []*Order, transfers []ledger.Transfer) []Difference {
	var out []Difference
	add := func(d Difference) { out = append(out, d) }
	byID := make(map[uint64]*ledger.Transfer, len(transfers))
	for i := range transfers {
		byID[transfers[i].ID] = &transfers[i]
	}
	byOrder := make(map[uint64]*Order, len(orders))
	for _, o := range orders {
		byOrder[o.ID] = o
	}
	for _, o := range orders {
		reconcileOrder(s, o, byID, add)
	}
	for i := range transfers {
		t := &transfers[i]
		id, step, ok := StepOf(t.ID)
		o := byOrder[id]
		switch {
		case !ok:
			add(Difference{Kind: DiffUnmatched, Transfer: t.ID, Expected: "a transfer of a payment order",
				Found: "a transfer with no order's id: " + describe(t)})
		case o == nil:
			add(Difference{Kind: DiffUnmatched, Order: id, Step: step, Transfer: t.ID,
				Expected: "an order with this biz id", Found: "no such order: " + describe(t)})
		case o.Done&(1<<step) != 0:
			// checked with its order
		case t.State == ledger.StateFailed:
			// refused by the ledger: it moved nothing, and its order knows (or will)
		case !o.knows(step):
			add(Difference{Kind: DiffUnmatched, Order: id, Step: step, Transfer: t.ID,
				Expected: "a step of the order", Found: "a step the order does not make: " + describe(t)})
		case o.State.Final() && !o.Active():
			add(Difference{Kind: DiffUnmatched, Order: id, Step: step, Transfer: t.ID,
				Expected: "no transfer (the step is not durable on the order)", Found: describe(t)})
		default:
			if want := o.transfer(s, step); !sameFields(&want, t) {
				add(Difference{Kind: DiffUnmatched, Order: id, Step: step, Transfer: t.ID,
					Expected: "the order's step in flight: " + describe(&want), Found: describe(t)})
			}
		}
	}
	slices.SortFunc(out, compareDiff)
	return out
}

// knows reports whether step is one the order can make (so that transfer(s, step) is defined).
func (o *Order) knows(step int) bool {
	holds := o.holds()
	switch {
	case step >= stepHold && step < stepPost:
		return holds&(1<<step) != 0
	case step >= stepPost && step < stepVoid:
		return o.Form != Transfer && holds&(1<<(step-stepPost+stepHold)) != 0
	case step >= stepVoid && step < stepMain:
		return o.Form != Transfer && holds&(1<<(step-stepVoid+stepHold)) != 0
	case step == stepMain:
		return o.booksMain()
	case step >= stepExceptions && step < stepsMax:
		k := (step - stepExceptions) / 2
		return k < len(o.Exceptions) && o.Exceptions[k].Booked()
	}
	return false
}

func reconcileOrder(s *Setup, o *Order, byID map[uint64]*ledger.Transfer, add func(Difference)) {
	diff := func(kind DiffKind, step int, expected, found string) {
		d := Difference{Kind: kind, Order: o.ID, Step: step, Expected: expected, Found: found}
		if step > 0 && step < stepsMax {
			d.Transfer = TransferID(o.ID, step)
		}
		add(d)
	}
	final := o.State.Final()
	// Every durable step: in the ledger, as the order builds it, not refused.
	found := map[int]*ledger.Transfer{}
	for m := o.Done; m != 0; m &= m - 1 {
		step := trailing(m)
		if step >= stepsMax || !o.knows(step) {
			diff(DiffUnmatched, step, "a step of the order", "durable step "+fmt.Sprint(step)+" the order does not make")
			continue
		}
		want := o.transfer(s, step)
		t, ok := byID[want.ID]
		if !ok {
			diff(DiffMissing, step, describe(&want), "no transfer in the ledger")
			continue
		}
		found[step] = t
		if !sameFields(&want, t) {
			e, f := fieldDiff(&want, t)
			diff(DiffFields, step, e, f)
		}
		switch {
		case t.State == ledger.StateFailed:
			diff(DiffState, step, "a transfer the ledger took", fmt.Sprintf("failed (%v)", t.Result))
		case want.Flags&ledger.TransferPending == 0 && t.State != ledger.StatePosted &&
			!(t.State == ledger.StateInFlight && !final):
			diff(DiffState, step, stateName(ledger.StatePosted), stateName(t.State))
		}
	}
	holds := o.holds()
	if o.Form == Transfer {
		holds = 0 // its one posting is not a hold
	}
	// Holds: posted when the order succeeded, voided when it failed, pending (or on their way to
	// either) while it is in flight.
	for m := holds & o.Done; m != 0; m &= m - 1 {
		step := trailing(m)
		t := found[step]
		if t == nil || t.Flags&ledger.TransferPending == 0 {
			continue
		}
		want := ledger.StatePending
		switch {
		case o.State == Succeeded:
			want = ledger.StatePendingPosted
		case o.State == Failed:
			want = ledger.StatePendingVoided
		case t.State == ledger.StatePendingPosted || t.State == ledger.StatePendingVoided || t.State == ledger.StateInFlight:
			want = t.State // on its way to the outcome (or, split, to the ledger's answer)
		}
		if t.State != want {
			diff(DiffState, step, fmt.Sprintf("hold %s (order %v)", stateName(want), o.State), stateName(t.State))
		}
	}
	// What each outcome must have made, and must not.
	main := uint64(0)
	if o.booksMain() {
		main = 1 << stepMain
	}
	posts := holds<<(stepPost-stepHold) | main
	voids := holds << (stepVoid - stepHold)
	switch o.State {
	case Succeeded:
		for m := (holds | posts) &^ o.Done; m != 0; m &= m - 1 {
			step := trailing(m)
			diff(DiffState, step, "durable (the order succeeded)", "not durable on the order")
		}
		if o.Form == Transfer && o.Done&(1<<stepHold) == 0 {
			diff(DiffState, stepHold, "durable (the order succeeded)", "not durable on the order")
		}
		for m := voids & o.Done; m != 0; m &= m - 1 {
			diff(DiffState, trailing(m), "no void (the order succeeded)", "a void")
		}
	case Failed:
		for m := posts & o.Done; m != 0; m &= m - 1 {
			diff(DiffState, trailing(m), "nothing posted (the order failed)", "a posting")
		}
		if o.Form == Transfer && o.Done&(1<<stepHold) != 0 {
			diff(DiffState, stepHold, "nothing posted (the order failed)", "a posting")
		}
		for m := (holds & o.Done) &^ (o.Done >> (stepVoid - stepHold)); m != 0; m &= m - 1 {
			step := trailing(m)
			diff(DiffState, step-stepHold+stepVoid, "a void of the hold (the order failed)", "not durable on the order")
		}
	}
	// Amounts: a succeeded order's postings moved its amount.
	if o.State == Succeeded {
		var moved, parts uint64
		all := true
		for i, in := range o.Instruments {
			if in.Amount == 0 {
				continue
			}
			parts += in.Amount
			step := stepMain
			switch {
			case o.Form == Transfer:
				step = stepHold + i
			case holds&(1<<(stepHold+i)) != 0:
				step = stepPost + i
			}
			t := found[step]
			if t == nil {
				all = false
				continue
			}
			moved += t.Amount
		}
		if parts != o.Amount {
			diff(DiffAmount, 0, fmt.Sprintf("parts adding up to %d", o.Amount), fmt.Sprintf("parts of %d", parts))
		}
		if all && moved != o.Amount {
			diff(DiffAmount, 0, fmt.Sprintf("postings moving %d", o.Amount), fmt.Sprintf("postings moving %d", moved))
		}
	}
	// Exceptions: money a record holds is booked to suspense (with the record's amount: its
	// step's fields are checked above), and taken out once the channel refunded it.
	for k := range o.Exceptions {
		x := &o.Exceptions[k]
		book, unbook := bookStep(k), unbookStep(k)
		if !x.Booked() {
			if o.Done&(1<<book|1<<unbook) != 0 {
				diff(DiffException, book, fmt.Sprintf("no suspense posting (exception %d %v holds no money)", k, x.Kind),
					"a suspense posting")
			}
			continue
		}
		if x.Step != ExcBooking && o.Done&(1<<book) == 0 {
			diff(DiffException, book, fmt.Sprintf("exception %d (%v, %v) booked to suspense", k, x.Kind, x.Step),
				"not durable on the order")
		}
		if x.Step == ExcResolved && x.Refund != "" && o.Done&(1<<unbook) == 0 {
			diff(DiffException, unbook, fmt.Sprintf("exception %d refunded (txn %s) out of suspense", k, x.Refund),
				"not durable on the order")
		}
		if o.Done&(1<<unbook) != 0 && x.Refund == "" {
			diff(DiffException, unbook, fmt.Sprintf("exception %d out of suspense only once refunded", k),
				"no refund on the record")
		}
	}
	reconcileChannel(o, diff)
}

// reconcileChannel checks the order against what its channel request decided.
func reconcileChannel(o *Order, diff func(kind DiffKind, step int, expected, found string)) {
	card := o.card()
	if card == nil {
		if o.Txn != "" {
			diff(DiffChannel, 0, "no channel transaction (the order has no channel part)", "txn "+o.Txn)
		}
		return
	}
	if o.Outcome != OutcomeSucceeded && o.Outcome != OutcomeMismatch {
		return // not decided by the channel's money (declined, never sent, not found)
	}
	if o.Txn == "" || o.Paid == 0 {
		diff(DiffChannel, 0, fmt.Sprintf("a channel transaction for the %v outcome", o.Outcome),
			fmt.Sprintf("txn %q paid %d", o.Txn, o.Paid))
		return
	}
	recorded := slices.ContainsFunc(o.Exceptions, func(x Exception) bool {
		return x.Txn == o.Txn && x.Amount == o.Paid && (x.Kind == AmountMismatch || x.Kind == StatusConflict)
	})
	switch {
	case o.Outcome == OutcomeSucceeded && o.Paid != card.Amount && !recorded:
		diff(DiffChannel, 0, fmt.Sprintf("txn %s paid %d (the card's amount)", o.Txn, card.Amount),
			fmt.Sprintf("paid %d and no exception recording it", o.Paid))
	case o.Outcome == OutcomeMismatch && !recorded:
		diff(DiffChannel, 0, fmt.Sprintf("an amount_mismatch exception for txn %s paid %d", o.Txn, o.Paid), "none")
	case o.Outcome == OutcomeMismatch && o.Paid == card.Amount:
		diff(DiffChannel, 0, fmt.Sprintf("an amount other than the card's %d (outcome mismatch)", card.Amount),
			fmt.Sprintf("paid %d", o.Paid))
	}
}

func trailing(m uint64) int {
	n := 0
	for m&1 == 0 {
		m >>= 1
		n++
	}
	return n
}

// sameFields reports whether the ledger's transfer t carries the client fields of want.
func sameFields(want, t *ledger.Transfer) bool {
	e, _ := fieldDiff(want, t)
	return e == ""
}

// fieldDiff lists the client fields in which t differs from want: as want has them, as t has.
func fieldDiff(want, t *ledger.Transfer) (expected, found string) {
	var e, f []string
	check := func(name string, a, b any) {
		if a != b {
			e = append(e, fmt.Sprintf("%s=%v", name, a))
			f = append(f, fmt.Sprintf("%s=%v", name, b))
		}
	}
	check("debit", want.DebitAccountID, t.DebitAccountID)
	check("credit", want.CreditAccountID, t.CreditAccountID)
	check("amount", want.Amount, t.Amount)
	check("pending_id", want.PendingID, t.PendingID)
	check("user_data", want.UserData, t.UserData)
	check("ledger", want.Ledger, t.Ledger)
	check("code", want.Code, t.Code)
	check("timeout", want.Timeout, t.Timeout)
	check("flags", flagNames(want.Flags), flagNames(t.Flags))
	check("biz_id", fmt.Sprintf("%q", want.BizID), fmt.Sprintf("%q", t.BizID))
	return strings.Join(e, " "), strings.Join(f, " ")
}

// describe is a transfer's fields in one line.
func describe(t *ledger.Transfer) string {
	s := fmt.Sprintf("debit=%d credit=%d amount=%d ledger=%d code=%d flags=%s", t.DebitAccountID, t.CreditAccountID,
		t.Amount, t.Ledger, t.Code, flagNames(t.Flags))
	if t.PendingID != 0 {
		s += fmt.Sprintf(" pending_id=%d", t.PendingID)
	}
	if t.State != 0 {
		s += " state=" + stateName(t.State)
	}
	return s
}

func flagNames(f ledger.TransferFlags) string {
	var out []string
	for _, n := range []struct {
		f    ledger.TransferFlags
		name string
	}{{ledger.TransferLinked, "linked"}, {ledger.TransferPending, "pending"},
		{ledger.TransferPostPending, "post_pending"}, {ledger.TransferVoidPending, "void_pending"}} {
		if f&n.f != 0 {
			out = append(out, n.name)
			f &^= n.f
		}
	}
	if f != 0 {
		out = append(out, fmt.Sprintf("0x%x", uint16(f)))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, "|")
}

func stateName(s ledger.TransferState) string {
	switch s {
	case ledger.StatePosted:
		return "POSTED"
	case ledger.StatePending:
		return "PENDING"
	case ledger.StatePendingPosted:
		return "PENDING_POSTED"
	case ledger.StatePendingVoided:
		return "PENDING_VOIDED"
	case ledger.StatePendingExpired:
		return "PENDING_EXPIRED"
	case ledger.StateFailed:
		return "FAILED"
	case ledger.StateInFlight:
		return "IN_FLIGHT"
	}
	return fmt.Sprintf("STATE_%d", uint8(s))
}
