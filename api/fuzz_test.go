package api

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// FuzzCreateTransfersRequest: any bytes decode (or fail to) without panic, and a transfer that
// passes validation has the properties validation promises.
func FuzzCreateTransfersRequest(f *testing.F) {
	seed, _ := proto.Marshal(&ledgerv1.CreateTransfersRequest{Transfers: []*ledgerv1.Transfer{
		tr(1, 1, 2, 10), {Id: 2, DebitAccountId: 1, CreditAccountId: 2, PendingId: 1, Ledger: 1, Code: 1,
			Flags: &ledgerv1.TransferFlags{PostPending: true}, BizId: "order-1"}}})
	f.Add(seed)
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ledgerv1.CreateTransfersRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		for _, p := range req.GetTransfers() {
			tr := TransferFromProto(p)
			if ledger.ValidateTransfer(&tr) != ledger.ResultOK {
				continue
			}
			resolving := tr.Flags&(ledger.TransferPostPending|ledger.TransferVoidPending) != 0
			switch {
			case tr.ID == 0, tr.DebitAccountID == 0, tr.CreditAccountID == 0,
				tr.DebitAccountID == tr.CreditAccountID, tr.Ledger == 0, tr.Code == 0,
				len(tr.BizID) > ledger.BizIDBytesMax, tr.Timestamp != 0,
				!resolving && tr.Amount == 0, resolving && tr.PendingID == 0,
				!resolving && tr.PendingID != 0:
				t.Fatalf("validation passed %+v", tr)
			}
			back := TransferToProto(&tr)
			if again := TransferFromProto(back); again != tr {
				t.Fatalf("round trip: %+v became %+v", tr, again)
			}
		}
	})
}

// FuzzCreateAccountsRequest: the same for accounts.
func FuzzCreateAccountsRequest(f *testing.F) {
	seed, _ := proto.Marshal(&ledgerv1.CreateAccountsRequest{Accounts: []*ledgerv1.Account{
		{Id: 1, Ledger: 1, Code: 1, Flags: &ledgerv1.AccountFlags{History: true}}}})
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var req ledgerv1.CreateAccountsRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		for _, p := range req.GetAccounts() {
			a := AccountFromProto(p)
			if ledger.ValidateAccount(&a) != ledger.AccountResultOK {
				continue
			}
			if a.ID == 0 || a.ID >= ledger.TransitIDMin || a.Ledger == 0 || a.Code == 0 ||
				a.Balance != (ledger.Balance{}) || a.Timestamp != 0 {
				t.Fatalf("validation passed %+v", a)
			}
			if again := AccountFromProto(AccountToProto(&a)); again != a {
				t.Fatalf("round trip: %+v became %+v", a, again)
			}
		}
	})
}
