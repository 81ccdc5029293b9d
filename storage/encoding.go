package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/ledgercore/ledger/ledger"
)

// Key prefixes. Every id and timestamp in a key is big-endian, so keys sort numerically.
const (
	prefixAccount  = 'a' // a id                     -> account
	prefixTransfer = 't' // t id                     -> transfer
	prefixPosting  = 'h' // h account timestamp      -> posting
	prefixPending  = 'p' // p shard id               -> (empty) the transfer is pending
	prefixOutbox   = 'o' // o shard transferID kind  -> leg
	prefixLegDone  = 'l' // l transferID kind        -> result
	prefixClock    = 'c' // c shard                  -> last timestamp
	prefixMeta     = 'm' // m name                   -> value
)

const (
	accountKeyLen  = 1 + 8
	postingKeyLen  = 1 + 8 + 8
	outboxKeyLen   = 1 + 2 + 8 + 1
	legDoneKeyLen  = 1 + 8 + 1
	pendingKeyLen  = 1 + 2 + 8
	accountValLen  = 8 + 8 + 4 + 4 + 2 + 4*8
	transferValLen = 7*8 + 3*4 + 2 + 1 + 1 + 1
	postingValLen  = 8 + 8 + 8 + 1 + 1 // transfer, amount, held, op, flags; + balance if history
	legValLen      = 8 + 8 + 8 + 8 + 4 + 2
	balanceLen     = 4 * 8
)

const (
	postingSplit   = 1 << 0
	postingHistory = 1 << 1
)

var be = binary.BigEndian

func idKey(dst []byte, prefix byte, id uint64) []byte {
	dst = append(dst[:0], prefix)
	return be.AppendUint64(dst, id)
}

func postingKey(dst []byte, account, ts uint64) []byte {
	dst = idKey(dst, prefixPosting, account)
	return be.AppendUint64(dst, ts)
}

func outboxKey(dst []byte, from uint32, k ledger.LegKey) []byte {
	dst = append(dst[:0], prefixOutbox)
	dst = be.AppendUint16(dst, uint16(from))
	dst = be.AppendUint64(dst, k.TransferID)
	return append(dst, byte(k.Kind))
}

func legDoneKey(dst []byte, k ledger.LegKey) []byte {
	dst = idKey(dst, prefixLegDone, k.TransferID)
	return append(dst, byte(k.Kind))
}

func pendingKey(dst []byte, shard uint32, id uint64) []byte {
	dst = append(dst[:0], prefixPending)
	dst = be.AppendUint16(dst, uint16(shard))
	return be.AppendUint64(dst, id)
}

func clockKey(dst []byte, shard uint32) []byte {
	dst = append(dst[:0], prefixClock)
	return be.AppendUint16(dst, uint16(shard))
}

func appendBalance(dst []byte, b *ledger.Balance) []byte {
	dst = be.AppendUint64(dst, b.DebitsPending)
	dst = be.AppendUint64(dst, b.DebitsPosted)
	dst = be.AppendUint64(dst, b.CreditsPending)
	return be.AppendUint64(dst, b.CreditsPosted)
}

func readBalance(src []byte) ledger.Balance {
	return ledger.Balance{DebitsPending: be.Uint64(src), DebitsPosted: be.Uint64(src[8:]),
		CreditsPending: be.Uint64(src[16:]), CreditsPosted: be.Uint64(src[24:])}
}

func encodeAccount(dst []byte, a *ledger.Account) []byte {
	dst = be.AppendUint64(dst[:0], a.UserData)
	dst = be.AppendUint64(dst, a.Timestamp)
	dst = be.AppendUint32(dst, a.Ledger)
	dst = be.AppendUint32(dst, a.Code)
	dst = be.AppendUint16(dst, uint16(a.Flags))
	return appendBalance(dst, &a.Balance)
}

func decodeAccount(key, v []byte) (ledger.Account, error) {
	if len(key) != accountKeyLen || len(v) != accountValLen {
		return ledger.Account{}, fmt.Errorf("storage: account record %x: %d bytes, want %d", key, len(v), accountValLen)
	}
	return ledger.Account{ID: be.Uint64(key[1:]), UserData: be.Uint64(v), Timestamp: be.Uint64(v[8:]),
		Ledger: be.Uint32(v[16:]), Code: be.Uint32(v[20:]), Flags: ledger.AccountFlags(be.Uint16(v[24:])),
		Balance: readBalance(v[26:])}, nil
}

func encodeTransfer(dst []byte, t *ledger.Transfer) []byte {
	dst = be.AppendUint64(dst[:0], t.DebitAccountID)
	dst = be.AppendUint64(dst, t.CreditAccountID)
	dst = be.AppendUint64(dst, t.Amount)
	dst = be.AppendUint64(dst, t.PendingID)
	dst = be.AppendUint64(dst, t.UserData)
	dst = be.AppendUint64(dst, t.Timestamp)
	dst = be.AppendUint64(dst, 0) // reserved
	dst = be.AppendUint32(dst, t.Ledger)
	dst = be.AppendUint32(dst, t.Code)
	dst = be.AppendUint32(dst, t.Timeout)
	dst = be.AppendUint16(dst, uint16(t.Flags))
	dst = append(dst, byte(t.State), byte(t.Result), byte(len(t.BizID)))
	return append(dst, t.BizID...)
}

func decodeTransfer(key, v []byte) (ledger.Transfer, error) {
	if len(key) != accountKeyLen || len(v) < transferValLen || len(v) != transferValLen+int(v[transferValLen-1]) {
		return ledger.Transfer{}, fmt.Errorf("storage: transfer record %x: bad length %d", key, len(v))
	}
	t := ledger.Transfer{ID: be.Uint64(key[1:]), DebitAccountID: be.Uint64(v), CreditAccountID: be.Uint64(v[8:]),
		Amount: be.Uint64(v[16:]), PendingID: be.Uint64(v[24:]), UserData: be.Uint64(v[32:]),
		Timestamp: be.Uint64(v[40:]), Ledger: be.Uint32(v[56:]), Code: be.Uint32(v[60:]),
		Timeout: be.Uint32(v[64:]), Flags: ledger.TransferFlags(be.Uint16(v[68:])),
		State: ledger.TransferState(v[70]), Result: ledger.TransferResult(v[71])}
	if n := int(v[72]); n > 0 {
		t.BizID = string(v[transferValLen:])
	}
	if be.Uint64(v[48:]) != 0 {
		return ledger.Transfer{}, fmt.Errorf("storage: transfer record %x: reserved field set", key)
	}
	return t, nil
}

func encodePosting(dst []byte, p *ledger.Posting) []byte {
	dst = be.AppendUint64(dst[:0], p.TransferID)
	dst = be.AppendUint64(dst, p.Amount)
	dst = be.AppendUint64(dst, p.Held)
	var flags byte
	if p.Split {
		flags |= postingSplit
	}
	if p.History {
		flags |= postingHistory
	}
	dst = append(dst, byte(p.Op), flags)
	if p.History {
		dst = appendBalance(dst, &p.After)
	}
	return dst
}

func decodePosting(key, v []byte) (ledger.Posting, error) {
	if len(key) != postingKeyLen || len(v) < postingValLen {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad length %d", key, len(v))
	}
	p := ledger.Posting{Account: be.Uint64(key[1:]), Timestamp: be.Uint64(key[9:]),
		TransferID: be.Uint64(v), Amount: be.Uint64(v[8:]), Held: be.Uint64(v[16:]),
		Op: ledger.PostingOp(v[24]), Split: v[25]&postingSplit != 0, History: v[25]&postingHistory != 0}
	if !p.Op.Valid() || v[25]&^(postingSplit|postingHistory) != 0 {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad op or flags", key)
	}
	if p.History {
		if len(v) != postingValLen+balanceLen {
			return ledger.Posting{}, fmt.Errorf("storage: posting record %x: no balance", key)
		}
		p.After = readBalance(v[postingValLen:])
	} else if len(v) != postingValLen {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad length %d", key, len(v))
	}
	return p, nil
}

func encodeLeg(dst []byte, l *ledger.Leg) []byte {
	dst = be.AppendUint64(dst[:0], l.Account)
	dst = be.AppendUint64(dst, l.DebitAccount)
	dst = be.AppendUint64(dst, l.Amount)
	dst = be.AppendUint64(dst, l.Held)
	dst = be.AppendUint32(dst, l.Ledger)
	return be.AppendUint16(dst, uint16(l.From))
}

func decodeLeg(key, v []byte) (ledger.Leg, error) {
	if len(key) != outboxKeyLen || len(v) != legValLen {
		return ledger.Leg{}, fmt.Errorf("storage: outbox record %x: bad length %d", key, len(v))
	}
	l := ledger.Leg{LegKey: ledger.LegKey{TransferID: be.Uint64(key[3:]), Kind: ledger.LegKind(key[11])},
		Account: be.Uint64(v), DebitAccount: be.Uint64(v[8:]), Amount: be.Uint64(v[16:]),
		Held: be.Uint64(v[24:]), Ledger: be.Uint32(v[32:]), From: uint32(be.Uint16(v[36:]))}
	if !l.Kind.Valid() || l.From != uint32(be.Uint16(key[1:])) {
		return ledger.Leg{}, fmt.Errorf("storage: outbox record %x: bad kind or shard", key)
	}
	return l, nil
}
