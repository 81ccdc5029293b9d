package api

import (
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// u128 and u128ToProto translate 128-bit totals (nil on the wire is 0).
func u128(x *ledgerv1.Uint128) ledger.Uint128 { return ledger.Uint128{Hi: x.GetHi(), Lo: x.GetLo()} }

func u128ToProto(x ledger.Uint128) *ledgerv1.Uint128 {
	if x.IsZero() {
		return nil
	}
	return &ledgerv1.Uint128{Lo: x.Lo, Hi: x.Hi}
}

// AccountFromProto translates a wire account into the domain's. Output-only fields are kept,
// so that validation refuses them (balances_must_be_zero, timestamp_must_be_zero).
func AccountFromProto(a *ledgerv1.Account) ledger.Account {
	out := ledger.Account{ID: a.GetId(), Ledger: a.GetLedger(), Code: a.GetCode(),
		UserData: a.GetUserData(), Timestamp: a.GetTimestamp(),
		Balance: ledger.Balance{DebitsPending: u128(a.GetDebitsPending()), DebitsPosted: u128(a.GetDebitsPosted()),
			CreditsPending: u128(a.GetCreditsPending()), CreditsPosted: u128(a.GetCreditsPosted())}}
	if !u128(a.GetCreditsBuffered()).IsZero() {
		out.CreditsPosted = ledger.U128(1) // output only: refused as balances_must_be_zero
	}
	if f := a.GetFlags(); f != nil {
		if f.GetDebitsMustNotExceedCredits() {
			out.Flags |= ledger.AccountDebitsMustNotExceedCredits
		}
		if f.GetCreditsMustNotExceedDebits() {
			out.Flags |= ledger.AccountCreditsMustNotExceedDebits
		}
		if f.GetHistory() {
			out.Flags |= ledger.AccountHistory
		}
		if f.GetClosed() {
			out.Flags |= ledger.AccountClosed
		}
		if f.GetInternal() {
			out.Flags |= ledger.AccountInternal
		}
		if f.GetHot() {
			out.Flags |= ledger.AccountHot
		}
	}
	return out
}

// AccountToProto translates a domain account to the wire.
func AccountToProto(a *ledger.Account) *ledgerv1.Account {
	return &ledgerv1.Account{Id: a.ID, Ledger: a.Ledger, Code: a.Code, UserData: a.UserData,
		Timestamp: a.Timestamp, DebitsPending: u128ToProto(a.DebitsPending),
		DebitsPosted: u128ToProto(a.DebitsPosted), CreditsPending: u128ToProto(a.CreditsPending),
		CreditsPosted: u128ToProto(a.CreditsPosted),
		Flags: &ledgerv1.AccountFlags{
			DebitsMustNotExceedCredits: a.Flags&ledger.AccountDebitsMustNotExceedCredits != 0,
			CreditsMustNotExceedDebits: a.Flags&ledger.AccountCreditsMustNotExceedDebits != 0,
			History:                    a.Flags&ledger.AccountHistory != 0,
			Closed:                     a.Flags&ledger.AccountClosed != 0,
			Internal:                   a.Flags&ledger.AccountInternal != 0,
			Hot:                        a.Flags&ledger.AccountHot != 0,
		}}
}

// TransferFromProto translates a wire transfer into the domain's. The output-only fields are
// kept, so that validation refuses them (timestamp_must_be_zero); an enum value that does not
// fit the domain's byte is kept as non-zero, never truncated to a value that passes.
func TransferFromProto(t *ledgerv1.Transfer) ledger.Transfer {
	out := ledger.Transfer{ID: t.GetId(), DebitAccountID: t.GetDebitAccountId(),
		CreditAccountID: t.GetCreditAccountId(), Amount: t.GetAmount(), PendingID: t.GetPendingId(),
		UserData: t.GetUserData(), Ledger: t.GetLedger(), Code: t.GetCode(), Timeout: t.GetTimeout(),
		BizID: t.GetBizId(), Timestamp: t.GetTimestamp(), State: ledger.TransferState(wireByte(int32(t.GetState()))),
		Result: ledger.TransferResult(wireByte(int32(t.GetResult())))}
	if f := t.GetFlags(); f != nil {
		if f.GetLinked() {
			out.Flags |= ledger.TransferLinked
		}
		if f.GetPending() {
			out.Flags |= ledger.TransferPending
		}
		if f.GetPostPending() {
			out.Flags |= ledger.TransferPostPending
		}
		if f.GetVoidPending() {
			out.Flags |= ledger.TransferVoidPending
		}
	}
	return out
}

// wireByte is an enum's wire value as a byte; values that do not fit (negative, or past 255)
// become 255, which no valid input has.
func wireByte(v int32) uint8 {
	if v < 0 || v > 0xff {
		return 0xff
	}
	return uint8(v)
}

// TransferToProto translates a domain transfer to the wire.
func TransferToProto(t *ledger.Transfer) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: t.ID, DebitAccountId: t.DebitAccountID, CreditAccountId: t.CreditAccountID,
		Amount: t.Amount, PendingId: t.PendingID, Ledger: t.Ledger, Code: t.Code, Timeout: t.Timeout,
		BizId: t.BizID, UserData: t.UserData, Timestamp: t.Timestamp,
		State: ledgerv1.TransferState(t.State), Result: ledgerv1.CreateTransferResult(t.Result),
		Flags: &ledgerv1.TransferFlags{
			Linked:      t.Flags&ledger.TransferLinked != 0,
			Pending:     t.Flags&ledger.TransferPending != 0,
			PostPending: t.Flags&ledger.TransferPostPending != 0,
			VoidPending: t.Flags&ledger.TransferVoidPending != 0,
		}}
}
