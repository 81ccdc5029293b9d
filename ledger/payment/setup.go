package payment

import (
	"fmt"
	"slices"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/rules"
)

// Codes names the transaction code each step of the payment forms posts with. A deployment
// changes what a scene posts by changing its template in the rules file.
type Codes struct {
	Recharge, WithdrawHold, WithdrawPaid, Pay, PayCoupon, PayChannel       string
	Refund, RefundCoupon, RefundChannel, Transfer, SuspenseIn, SuspenseOut string
}

// DefaultCodes are the codes of the default chart.
var DefaultCodes = Codes{Recharge: "recharge", WithdrawHold: "withdraw_hold", WithdrawPaid: "withdraw_paid",
	Pay: "pay", PayCoupon: "pay_coupon", PayChannel: "pay_channel", Refund: "refund", RefundCoupon: "refund_coupon",
	RefundChannel: "refund_channel", Transfer: "transfer", SuspenseIn: "suspense_in", SuspenseOut: "suspense_out"}

// ChannelsMax is the most channels a deployment may name.
const ChannelsMax = 255

// platformAccountBit marks the ids of accounts the payment layer opens for the platform: ids
// from 2^62+2^61 to 2^63-1 (the ledger keeps 2^63 and above for its transit accounts, and the
// load tester's shadow accounts have bit 62 without bit 61), so callers of the ledger API
// open their accounts below that.
const platformAccountBit = 1<<62 | 1<<61

// Setup is what the payment forms post with: the chart, the codes of each step, and the
// channels. It is immutable once built.
type Setup struct {
	Chart *rules.Chart
	// Channels are the channels new orders may name.
	Channels []string
	// known are every channel the store has seen, in the order they were first seen: a
	// channel's platform accounts carry its position, which must never change (see Remember).
	known []string
	// Currencies names each ledger's currency (ISO 4217) for the channels; a ledger not
	// named is "CNY".
	Currencies map[uint32]string
	codes      map[string]rules.Pair // code name -> its single posting
	ids        map[string]uint32
	names      Codes
}

// NewSetup checks that every code of codes exists in the chart with exactly one posting, and
// that channels are few enough and distinct. With no channels, only the forms that need none
// are served (transfers, payments from coupons and balance, and their refunds).
func NewSetup(chart *rules.Chart, codes Codes, channels []string) (*Setup, error) {
	if len(channels) > ChannelsMax {
		return nil, fmt.Errorf("payment: %d channels: want at most %d", len(channels), ChannelsMax)
	}
	for i, c := range channels {
		if c == "" || slices.Index(channels, c) != i {
			return nil, fmt.Errorf("payment: channel %q: names must be non-empty and distinct", c)
		}
	}
	s := &Setup{Chart: chart, Channels: slices.Clone(channels), codes: map[string]rules.Pair{},
		ids: map[string]uint32{}, names: codes}
	for _, name := range []string{codes.Recharge, codes.WithdrawHold, codes.WithdrawPaid, codes.Pay, codes.PayCoupon,
		codes.PayChannel, codes.Refund, codes.RefundCoupon, codes.RefundChannel, codes.Transfer, codes.SuspenseIn,
		codes.SuspenseOut} {
		c, ok := chart.Codes[name]
		if !ok {
			return nil, fmt.Errorf("payment: the rules have no transaction code %q", name)
		}
		pairs := c.Pairs()
		if len(pairs) != 1 {
			return nil, fmt.Errorf("payment: transaction code %q: the payment forms post one debit and one credit, not %d", name, len(pairs))
		}
		for _, subject := range []uint32{pairs[0].Debit, pairs[0].Credit} {
			if chart.Subjects[subject].Code > 1<<24-1 {
				return nil, fmt.Errorf("payment: transaction code %q: subject %d: platform subjects are below 2^24", name, subject)
			}
		}
		s.codes[name], s.ids[name] = pairs[0], c.ID
	}
	return s, nil
}

// IsPlatformAccount reports whether id is in the range of the platform's accounts, which
// only the payment layer opens (callers of the ledger API are refused it).
func IsPlatformAccount(id uint64) bool {
	return id&platformAccountBit == platformAccountBit && id < ledger.TransitIDMin
}

// Currency is the ISO 4217 code of a ledger's currency.
func (s *Setup) Currency(ledgerID uint32) string {
	if c, ok := s.Currencies[ledgerID]; ok {
		return c
	}
	return "CNY"
}

// Channel reports whether name is a channel of the setup.
func (s *Setup) Channel(name string) bool { return slices.Contains(s.Channels, name) }

// Remember fixes the channels' positions: known are the channels the store has seen, in the
// order it first saw them; the setup's channels it has not seen are added after them. A
// channel's accounts keep their ids across restarts whatever channels are configured, and an
// order of a channel no longer configured still books to its channel's accounts. It answers
// the list to store, and whether it grew.
func (s *Setup) Remember(known []string) ([]string, bool, error) {
	out := slices.Clone(known)
	for _, c := range s.Channels {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if len(out) > ChannelsMax {
		return nil, false, fmt.Errorf("payment: %d channels over the store's life: at most %d", len(out), ChannelsMax)
	}
	s.known = out
	return out, len(out) != len(known), nil
}

// position is a channel's place among the known channels, from 1; 0 for none.
func (s *Setup) position(channel string) uint64 {
	known := s.known
	if known == nil {
		known = s.Channels
	}
	return uint64(slices.Index(known, channel) + 1)
}

// PlatformAccount is the id of the platform's account under subject in a ledger, for a
// channel when the subject has one account per channel.
func (s *Setup) PlatformAccount(ledgerID, subject uint32, channel string) uint64 {
	idx := uint64(0)
	if s.Chart.Subjects[subject].Owner == rules.PerChannel {
		idx = s.position(channel)
		if idx == 0 {
			panic(fmt.Sprintf("payment: INVARIANT: channel %q has no position (Remember the store's channels first)", channel))
		}
	}
	return platformAccountBit | uint64(ledgerID&0x7fff)<<32 | uint64(subject)<<8 | idx
}

// PlatformAccounts are the accounts the platform needs in a ledger: one per platform leaf
// subject, one per channel for per-channel subjects. The host opens them at start (opening
// again answers EXISTS). They are internal and allow any balance.
func (s *Setup) PlatformAccounts(ledgerID uint32) []ledger.Account {
	var out []ledger.Account
	for _, code := range s.Chart.SubjectCodes() {
		sub := s.Chart.Subjects[code]
		if !sub.Leaf() || sub.Owner == rules.Party || code > 1<<24-1 {
			continue
		}
		channels := []string{""}
		if sub.Owner == rules.PerChannel {
			channels = s.Channels
		}
		for _, c := range channels {
			out = append(out, ledger.Account{ID: s.PlatformAccount(ledgerID, code, c), Ledger: ledgerID, Code: code,
				Flags: ledger.AccountInternal | ledger.AccountHot})
		}
	}
	return out
}

// LedgerIDMax is the largest ledger (currency) the payment layer serves: platform account ids
// carry it in 15 bits.
const LedgerIDMax = 1<<15 - 1

// posting is the transfer of step of order o under code: the subjects the code names are the
// platform's accounts, or from (debit side) and to (credit side) where the subject belongs
// to a party.
func (s *Setup) posting(o *Order, code string, step int, from, to, amount uint64) ledger.Transfer {
	p := s.codes[code]
	side := func(subject uint32, party uint64) uint64 {
		if s.Chart.Subjects[subject].Owner == rules.Party {
			return party
		}
		return s.PlatformAccount(o.Ledger, subject, o.Channel)
	}
	return ledger.Transfer{ID: TransferID(o.ID, step), DebitAccountID: side(p.Debit, from),
		CreditAccountID: side(p.Credit, to), Amount: amount, Ledger: o.Ledger, Code: s.ids[code], BizID: o.BizID}
}

// partySubjects are the subjects the party accounts of a posting under code must have:
// debit side, credit side (0 where the side is the platform's).
func (s *Setup) partySubjects(code string) (debit, credit uint32) {
	p := s.codes[code]
	if s.Chart.Subjects[p.Debit].Owner == rules.Party {
		debit = p.Debit
	}
	if s.Chart.Subjects[p.Credit].Owner == rules.Party {
		credit = p.Credit
	}
	return debit, credit
}
