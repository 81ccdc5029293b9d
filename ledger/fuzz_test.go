package ledger_test

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ledgercore/ledger/ledger"
)

// FuzzTransfers runs arbitrary batches of transfers (and deliveries, expiries and crashes)
// through two shards and audits the invariants after each step: no input may panic the core
// or break double entry.
func FuzzTransfers(f *testing.F) {
	f.Add([]byte{1, 1, 2, 10, 0, 0, 1, 2, 1, 5, 1, 0, 2, 3, 1, 1, 2, 0})
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12"))
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWorld(2)
		var as []ledger.Account
		for id := uint64(1); id <= 6; id++ {
			a := ledger.Account{ID: id, Ledger: 1 + uint32(id/6), Code: 1}
			switch id {
			case 2:
				a.Flags = ledger.AccountDebitsMustNotExceedCredits
			case 3:
				a.Flags = ledger.AccountCreditsMustNotExceedDebits | ledger.AccountHistory
			case 4:
				a.Flags = ledger.AccountClosed
			}
			as = append(as, a)
		}
		w.createAccounts(as)
		const recordBytes = 9
		var batch []ledger.Transfer
		for len(data) >= recordBytes {
			r := data[:recordBytes]
			data = data[recordBytes:]
			switch r[0] % 8 {
			case 0:
				w.deliver(int(r[1] % 4))
				continue
			case 1:
				w.now += uint64(r[1]) * 1_000_000_000
				w.expire()
				continue
			case 2:
				w.crash()
				continue
			case 3:
				batch = nil
			}
			tx := ledger.Transfer{ID: uint64(r[1] % 32), DebitAccountID: uint64(r[2] % 8),
				CreditAccountID: uint64(r[3] % 8), Amount: uint64(binary.LittleEndian.Uint16(r[4:])),
				PendingID: uint64(r[6] % 32), Ledger: 1 + uint32(r[7]%5/4), Code: 1,
				Flags: ledger.TransferFlags(r[8] & 0x1f), Timeout: uint32(r[7] % 3)}
			if r[4] == 0xff {
				tx.Amount = ^uint64(0) - uint64(r[5])
			}
			if r[8]&0x20 != 0 {
				tx.BizID = strings.Repeat("b", int(r[5]%80))
			}
			batch = append(batch, tx)
			if r[0]%8 == 7 || len(batch) > 8 {
				w.createTransfers(batch)
				batch = nil
			}
			if problems := w.audit(); len(problems) > 0 {
				t.Fatalf("invariants broken: %s", strings.Join(problems, "\n"))
			}
		}
		w.deliver(0)
		if problems := w.audit(); len(problems) > 0 {
			t.Fatalf("invariants broken: %s", strings.Join(problems, "\n"))
		}
	})
}
