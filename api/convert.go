package api

import (
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// AccountFromProto translates a wire account into the domain's.
func AccountFromProto(a *ledgerv1.Account) ledger.Account {
	out := ledger.Account{ID: a.GetId(), Ledger: a.GetLedger(), Code: a.GetCode(),
		UserData: a.GetUserData(), Timestamp: a.GetTimestamp(),
		Balance: ledger.Balance{DebitsPending: a.GetDebitsPending(), DebitsPosted: a.GetDebitsPosted(),
			CreditsPending: a.GetCreditsPending(), CreditsPosted: a.GetCreditsPosted()}}
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
		Timestamp: a.Timestamp, DebitsPending: a.DebitsPending, DebitsPosted: a.DebitsPosted,
		CreditsPending: a.CreditsPending, CreditsPosted: a.CreditsPosted,
		Flags: &ledgerv1.AccountFlags{
			DebitsMustNotExceedCredits: a.Flags&ledger.AccountDebitsMustNotExceedCredits != 0,
			CreditsMustNotExceedDebits: a.Flags&ledger.AccountCreditsMustNotExceedDebits != 0,
			History:                    a.Flags&ledger.AccountHistory != 0,
			Closed:                     a.Flags&ledger.AccountClosed != 0,
			Internal:                   a.Flags&ledger.AccountInternal != 0,
			Hot:                        a.Flags&ledger.AccountHot != 0,
		}}
}

// TransferFromProto translates a wire transfer into the domain's.
func TransferFromProto(t *ledgerv1.Transfer) ledger.Transfer {
	out := ledger.Transfer{ID: t.GetId(), DebitAccountID: t.GetDebitAccountId(),
		CreditAccountID: t.GetCreditAccountId(), Amount: t.GetAmount(), PendingID: t.GetPendingId(),
		UserData: t.GetUserData(), Ledger: t.GetLedger(), Code: t.GetCode(), Timeout: t.GetTimeout(),
		BizID: t.GetBizId(), Timestamp: t.GetTimestamp(), State: ledger.TransferState(t.GetState())}
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

// TransferToProto translates a domain transfer to the wire.
func TransferToProto(t *ledger.Transfer) *ledgerv1.Transfer {
	return &ledgerv1.Transfer{Id: t.ID, DebitAccountId: t.DebitAccountID, CreditAccountId: t.CreditAccountID,
		Amount: t.Amount, PendingId: t.PendingID, Ledger: t.Ledger, Code: t.Code, Timeout: t.Timeout,
		BizId: t.BizID, UserData: t.UserData, Timestamp: t.Timestamp,
		State: ledgerv1.TransferState(t.State),
		Flags: &ledgerv1.TransferFlags{
			Linked:      t.Flags&ledger.TransferLinked != 0,
			Pending:     t.Flags&ledger.TransferPending != 0,
			PostPending: t.Flags&ledger.TransferPostPending != 0,
			VoidPending: t.Flags&ledger.TransferVoidPending != 0,
		}}
}
