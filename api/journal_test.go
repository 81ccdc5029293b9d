package api

import (
	"testing"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"

	"github.com/ledgercore/ledger/ledger"
)

// TestAccountTransfersOfForeignTransitID: GetAccountTransfers for a transit-shaped account id
// whose shard bits are past the ledger's shards answers nothing (it once made storage index
// past its shards and panic, which killed the server).
func TestAccountTransfersOfForeignTransitID(t *testing.T) {
	f := newFixture(t, 2)
	resp, err := f.client.GetAccountTransfers(f.ctx, &ledgerv1.GetAccountTransfersRequest{
		Filter: &ledgerv1.AccountFilter{AccountId: ledger.TransitAccountID(0x7fff, 1)}})
	if err != nil || len(resp.GetTransfers()) != 0 {
		t.Fatalf("answered %v, %v", resp, err)
	}
}
