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
	prefixPosting  = 'h' // h account timestamp      -> posting (format 7 and older; now the journal: journal.go)
	prefixPending  = 'p' // p shard id               -> (empty) the transfer is pending
	prefixOutbox   = 'o' // o account shard transferID kind -> leg (account: the credit account)
	prefixLegDone  = 'l' // l transferID kind        -> result
	prefixClock    = 'c' // c shard                  -> last timestamp
	prefixMeta     = 'm' // m name                   -> value
	// b len(biz) biz transferID -> (empty): the transfers of a business id
	prefixTransferBiz = 'b'
	// Accounting days (end of day: eod.go).
	prefixShardDay = 'd' // d shard               -> the shard's accounting day
	prefixDayStart = 'w' // w day shard           -> the shard's clock when it switched to the day
	prefixSnapshot = 'z' // z day account         -> the account's closing balance of the day
	prefixEOD      = 'n' // n day                 -> the day's end-of-day record
)

const (
	accountKeyLen = 1 + 8
	postingKeyLen = 1 + 8 + 8
	outboxKeyLen  = 1 + 8 + 2 + 8 + 1
	legDoneKeyLen = 1 + 8 + 1
	pendingKeyLen = 1 + 2 + 8
	legValLen     = 8 + 8 + 8 + 4 + 1
	legDayValLen  = legValLen + 4 // with the transfer's accounting day (format 7)
)

const legRefusable = 1 << 0

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

// outboxKey orders the outbox by credit account, so that the inflows on their way to one
// account (a hot account's buffered credits) are one short range.
func outboxKey(dst []byte, l *ledger.Leg) []byte {
	dst = idKey(dst, prefixOutbox, l.Account)
	dst = be.AppendUint16(dst, uint16(l.From))
	dst = be.AppendUint64(dst, l.TransferID)
	return append(dst, byte(l.Kind))
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

// Record values are sequences of unsigned varints (canonical: no padding bytes), with a
// version byte first, so that the many small numbers of a ledger (amounts, codes, flags)
// take a byte or two. Fewer bytes per transfer is less work for every flush and compaction,
// which is where most of the CPU of a write-heavy store goes.
const recordVersion = 1

// reader decodes a record's varints; the first failure sticks.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || n > 1 && r.b[n-1] == 0 { // malformed, or not canonical
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32() uint32 {
	v := r.uvarint()
	if v > 0xffffffff {
		r.bad = true
	}
	return uint32(v)
}

// uvarint128 reads an unsigned LEB128 number of up to 128 bits: the same bytes as a uvarint
// for values below 2^64.
func (r *reader) uvarint128() ledger.Uint128 {
	var v ledger.Uint128
	for i, shift := 0, uint(0); i < len(r.b) && i < uvarint128BytesMax; i, shift = i+1, shift+7 {
		c := uint64(r.b[i] & 0x7f)
		if shift < 64 {
			v.Lo |= c << shift
			if shift > 57 {
				v.Hi |= c >> (64 - shift)
			}
		} else {
			v.Hi |= c << (shift - 64)
		}
		if r.b[i] < 0x80 {
			last := i == uvarint128BytesMax-1 && r.b[i] > 3 // past bit 127
			if last || i > 0 && r.b[i] == 0 {               // overflow, or not canonical
				break
			}
			r.b = r.b[i+1:]
			return v
		}
	}
	r.bad = true
	r.b = nil
	return ledger.Uint128{}
}

// uvarint128BytesMax is the length of the longest 128-bit LEB128 number (ceil(128/7)).
const uvarint128BytesMax = 19

func appendUvarint128(dst []byte, v ledger.Uint128) []byte {
	if v.Hi == 0 {
		return av(dst, v.Lo)
	}
	for v.Hi != 0 || v.Lo >= 0x80 {
		dst = append(dst, byte(v.Lo)|0x80)
		v.Lo = v.Lo>>7 | v.Hi<<57
		v.Hi >>= 7
	}
	return append(dst, byte(v.Lo))
}

func (r *reader) byte() byte {
	v := r.uvarint()
	if v > 0xff {
		r.bad = true
	}
	return byte(v)
}

func (r *reader) version(what string, key []byte) error {
	if len(r.b) == 0 || r.b[0] != recordVersion {
		return fmt.Errorf("storage: %s record %x: unknown version", what, key)
	}
	r.b = r.b[1:]
	return nil
}

// done reports whether the record decoded exactly, with nothing left over.
func (r *reader) done(what string, key []byte) error {
	if r.bad || len(r.b) != 0 {
		return fmt.Errorf("storage: %s record %x: malformed", what, key)
	}
	return nil
}

// av appends v as a varint. Most of a record's numbers are under 128 (flags, states, codes,
// zero fields): that case is inlined, where a call of binary.AppendUvarint through a
// variable was never (BenchmarkWriterCommit).
func av(dst []byte, v uint64) []byte {
	if v < 0x80 {
		return append(dst, byte(v))
	}
	return binary.AppendUvarint(dst, v)
}

func appendBalance(dst []byte, b *ledger.Balance) []byte {
	dst = appendUvarint128(dst, b.DebitsPending)
	dst = appendUvarint128(dst, b.DebitsPosted)
	dst = appendUvarint128(dst, b.CreditsPending)
	return appendUvarint128(dst, b.CreditsPosted)
}

func (r *reader) balance() ledger.Balance {
	return ledger.Balance{DebitsPending: r.uvarint128(), DebitsPosted: r.uvarint128(),
		CreditsPending: r.uvarint128(), CreditsPosted: r.uvarint128()}
}

func encodeAccount(dst []byte, a *ledger.Account) []byte {
	dst = append(dst[:0], recordVersion)
	dst = av(dst, a.UserData)
	dst = av(dst, a.Timestamp)
	dst = av(dst, uint64(a.Ledger))
	dst = av(dst, uint64(a.Code))
	dst = av(dst, uint64(a.Flags))
	return appendBalance(dst, &a.Balance)
}

func decodeAccount(key, v []byte) (ledger.Account, error) {
	if len(key) != accountKeyLen {
		return ledger.Account{}, fmt.Errorf("storage: account key %x: bad length", key)
	}
	r := reader{b: v}
	if err := r.version("account", key); err != nil {
		return ledger.Account{}, err
	}
	a := ledger.Account{ID: be.Uint64(key[1:]), UserData: r.uvarint(), Timestamp: r.uvarint(),
		Ledger: r.uint32(), Code: r.uint32()}
	flags := r.uvarint()
	a.Flags = ledger.AccountFlags(flags)
	a.Balance = r.balance()
	if flags > 0xffff {
		r.bad = true
	}
	return a, r.done("account", key)
}

func encodeTransfer(dst []byte, t *ledger.Transfer) []byte {
	dst = append(dst[:0], recordVersion)
	dst = av(dst, t.DebitAccountID)
	dst = av(dst, t.CreditAccountID)
	dst = av(dst, t.Amount)
	dst = av(dst, t.PendingID)
	dst = av(dst, t.UserData)
	dst = av(dst, t.Timestamp)
	dst = av(dst, uint64(t.Ledger))
	dst = av(dst, uint64(t.Code))
	dst = av(dst, uint64(t.Timeout))
	dst = av(dst, uint64(t.Flags))
	dst = av(dst, uint64(t.State))
	dst = av(dst, uint64(t.Result))
	dst = av(dst, uint64(len(t.BizID)))
	return append(dst, t.BizID...)
}

func decodeTransfer(key, v []byte) (ledger.Transfer, error) {
	if len(key) != accountKeyLen {
		return ledger.Transfer{}, fmt.Errorf("storage: transfer key %x: bad length", key)
	}
	r := reader{b: v}
	if err := r.version("transfer", key); err != nil {
		return ledger.Transfer{}, err
	}
	t := ledger.Transfer{ID: be.Uint64(key[1:]), DebitAccountID: r.uvarint(), CreditAccountID: r.uvarint(),
		Amount: r.uvarint(), PendingID: r.uvarint(), UserData: r.uvarint(), Timestamp: r.uvarint(),
		Ledger: r.uint32(), Code: r.uint32(), Timeout: r.uint32()}
	flags := r.uvarint()
	t.Flags = ledger.TransferFlags(flags)
	t.State = ledger.TransferState(r.byte())
	t.Result = ledger.TransferResult(r.byte())
	n := r.uvarint()
	if flags > 0xffff || n > uint64(len(r.b)) {
		return ledger.Transfer{}, fmt.Errorf("storage: transfer record %x: malformed", key)
	}
	if n > 0 {
		t.BizID = string(r.b[:n])
	}
	r.b = r.b[n:]
	return t, r.done("transfer", key)
}

func encodePosting(dst []byte, p *ledger.Posting) []byte { return appendPosting(dst[:0], p) }

// appendPosting appends a posting's record to dst.
func appendPosting(dst []byte, p *ledger.Posting) []byte {
	var flags byte
	if p.Split {
		flags |= postingSplit
	}
	if p.History {
		flags |= postingHistory
	}
	dst = append(dst, recordVersion, byte(p.Op), flags)
	dst = av(dst, p.TransferID)
	dst = av(dst, p.Amount)
	dst = av(dst, p.Held)
	dst = appendBalance(dst, &p.After)
	if p.Day != 0 {
		dst = av(dst, uint64(p.Day)) // absent in records older than format 7: day 0
	}
	return dst
}

// decodeOldPosting decodes a posting record of the layout before the journal (format 7 and
// older: h account timestamp), which opening the store for writing moves to the journal.
func decodeOldPosting(key, v []byte) (ledger.Posting, error) {
	if len(key) != postingKeyLen {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad key", key)
	}
	return decodePosting(be.Uint64(key[1:]), be.Uint64(key[9:]), key, v)
}

// decodePosting decodes the record of account's posting at ts (key: its key, for errors).
func decodePosting(account, ts uint64, key, v []byte) (ledger.Posting, error) {
	if len(v) < 3 {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad length %d", key, len(v))
	}
	r := reader{b: v}
	if err := r.version("posting", key); err != nil {
		return ledger.Posting{}, err
	}
	op, flags := ledger.PostingOp(v[1]), v[2]
	if !op.Valid() || flags&^(postingSplit|postingHistory) != 0 {
		return ledger.Posting{}, fmt.Errorf("storage: posting record %x: bad op or flags", key)
	}
	r.b = v[3:]
	p := ledger.Posting{Account: account, Timestamp: ts, Op: op,
		Split: flags&postingSplit != 0, History: flags&postingHistory != 0,
		TransferID: r.uvarint(), Amount: r.uvarint(), Held: r.uvarint()}
	p.After = r.balance()
	if len(r.b) > 0 && !r.bad {
		if p.Day = ledger.Day(r.uint32()); p.Day == 0 {
			r.bad = true // written only when it is not 0
		}
	}
	return p, r.done("posting", key)
}

func encodeLeg(dst []byte, l *ledger.Leg) []byte {
	dst = be.AppendUint64(dst[:0], l.DebitAccount)
	dst = be.AppendUint64(dst, l.Amount)
	dst = be.AppendUint64(dst, l.Held)
	dst = be.AppendUint32(dst, l.Ledger)
	var flags byte
	if l.Refusable {
		flags |= legRefusable
	}
	dst = append(dst, flags)
	if l.Day != 0 {
		dst = be.AppendUint32(dst, uint32(l.Day))
	}
	return dst
}

func decodeLeg(key, v []byte) (ledger.Leg, error) {
	if len(key) != outboxKeyLen || len(v) != legValLen && len(v) != legDayValLen {
		return ledger.Leg{}, fmt.Errorf("storage: outbox record %x: bad length %d", key, len(v))
	}
	l := ledger.Leg{Account: be.Uint64(key[1:]), From: uint32(be.Uint16(key[9:])),
		LegKey:       ledger.LegKey{TransferID: be.Uint64(key[11:]), Kind: ledger.LegKind(key[19])},
		DebitAccount: be.Uint64(v), Amount: be.Uint64(v[8:]), Held: be.Uint64(v[16:]),
		Ledger: be.Uint32(v[24:]), Refusable: v[28]&legRefusable != 0}
	if len(v) == legDayValLen {
		l.Day = ledger.Day(be.Uint32(v[legValLen:]))
	}
	if !l.Kind.Valid() || v[28]&^legRefusable != 0 || len(v) == legDayValLen && l.Day == 0 {
		return ledger.Leg{}, fmt.Errorf("storage: outbox record %x: bad kind or flags", key)
	}
	return l, nil
}
