package events

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// The stream's wire encoding of its bulk events, transfer records and postings (three events
// a transfer): each event is written as one field 1 (events) of a SubscribeResponse
// (proto/ledger/v1), the bytes proto.Marshal (deterministic) writes for what api.EventToProto
// returns (api's TestEncodeEventsMatches and TestWindowBytesEqualPerFollowerEncoding check
// it). The sequencer keeps the window of recent events in this encoding, once for every
// follower: a run of events is a run of bytes, sent to gRPC subscribers as they are. Order and
// exception events, few, are not encoded here (api.EncodeEvents does, through proto.Marshal).

// Field numbers of ledger.proto.
const (
	fieldResponseEvents = 1

	fieldEventSequence = 1
	fieldEventTransfer = 2
	fieldEventPosting  = 3

	fieldUint128Lo = 1
	fieldUint128Hi = 2
)

// AppendWire appends e, a transfer record or posting event, to dst as one field of a
// SubscribeResponse, and reports true; for an order or exception event it appends nothing and
// reports false. It sizes each message first and writes it in place, varint by varint:
// protowire's generic appends (a call for each field and a copy of each message into its
// parent) cost twice as much, and the window encodes every event of the stream.
func AppendWire(dst []byte, e *Event) ([]byte, bool) {
	var tag byte
	var n int
	switch {
	case e.Transfer != nil:
		tag, n = fieldEventTransfer<<3|byte(protowire.BytesType), transferSize(e.Transfer)
	case e.Posting != nil:
		tag, n = fieldEventPosting<<3|byte(protowire.BytesType), postingSize(e.Posting)
	default:
		return dst, false
	}
	body := 1 + sizeVarint(e.Seq) + 1 + sizeVarint(uint64(n)) + n
	size := 1 + sizeVarint(uint64(body)) + body
	dst = slices.Grow(dst, size)
	start := len(dst)
	dst = append(dst, fieldResponseEvents<<3|byte(protowire.BytesType))
	dst = binary.AppendUvarint(dst, uint64(body))
	dst = append(dst, fieldEventSequence<<3|byte(protowire.VarintType))
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = append(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(n))
	if e.Transfer != nil {
		dst = writeTransfer(dst, e.Transfer)
	} else {
		dst = writePosting(dst, e.Posting)
	}
	if len(dst)-start != size {
		// INVARIANT: the sizes are the writes' (TestEncodeEventsMatches).
		panic(fmt.Sprintf("events: an event sized %d bytes was written in %d", size, len(dst)-start))
	}
	return dst, true
}

// sizeVarint is protowire.SizeVarint, inlined.
func sizeVarint(v uint64) int { return int(9*uint32(bits.Len64(v))+64) / 64 }

// uintSize is a varint field's size (absent when 0); fields are below 16: one-byte tags.
func uintSize(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + sizeVarint(v)
}

func writeUint(b []byte, num byte, v uint64) []byte {
	if v == 0 {
		return b
	}
	return binary.AppendUvarint(append(b, num<<3|byte(protowire.VarintType)), v)
}

func writeBytesHead(b []byte, num byte, n int) []byte {
	return binary.AppendUvarint(append(b, num<<3|byte(protowire.BytesType)), uint64(n))
}

// transferFlagFields: the Transfer message's flags (field 8), as TransferFlags' bits.
const transferFlagFields = 4

// transferSize is a Transfer message's body size, as api.TransferToProto (flags always
// present).
func transferSize(t *ledger.Transfer) int {
	n := uintSize(t.ID) + uintSize(t.DebitAccountID) + uintSize(t.CreditAccountID) + uintSize(t.Amount) +
		uintSize(t.PendingID) + uintSize(uint64(t.Ledger)) + uintSize(uint64(t.Code)) +
		2 + 2*bits.OnesCount16(uint16(t.Flags&(1<<transferFlagFields-1))) +
		uintSize(uint64(t.Timeout)) + uintSize(t.UserData) + uintSize(t.Timestamp) +
		uintSize(uint64(t.State)) + uintSize(uint64(t.Result))
	if t.BizID != "" {
		n += 1 + sizeVarint(uint64(len(t.BizID))) + len(t.BizID)
	}
	return n
}

func writeTransfer(b []byte, t *ledger.Transfer) []byte {
	b = writeUint(b, 1, t.ID)
	b = writeUint(b, 2, t.DebitAccountID)
	b = writeUint(b, 3, t.CreditAccountID)
	b = writeUint(b, 4, t.Amount)
	b = writeUint(b, 5, t.PendingID)
	b = writeUint(b, 6, uint64(t.Ledger))
	b = writeUint(b, 7, uint64(t.Code))
	f := t.Flags & (1<<transferFlagFields - 1)
	b = writeBytesHead(b, 8, 2*bits.OnesCount16(uint16(f)))
	for k := byte(1); f != 0; k, f = k+1, f>>1 {
		if f&1 != 0 {
			b = append(b, k<<3|byte(protowire.VarintType), 1)
		}
	}
	b = writeUint(b, 9, uint64(t.Timeout))
	if t.BizID != "" {
		b = writeBytesHead(b, 10, len(t.BizID))
		b = append(b, t.BizID...)
	}
	b = writeUint(b, 11, t.UserData)
	b = writeUint(b, 12, t.Timestamp)
	b = writeUint(b, 13, uint64(t.State))
	return writeUint(b, 14, uint64(t.Result))
}

// totalSize is a Uint128 message's body size.
func totalSize(x ledger.Uint128) int { return uintSize(x.Lo) + uintSize(x.Hi) }

// totalFieldSize is a total's field size in a Posting (absent when zero).
func totalFieldSize(x ledger.Uint128) int {
	if x.IsZero() {
		return 0
	}
	n := totalSize(x)
	return 1 + sizeVarint(uint64(n)) + n
}

func writeTotal(b []byte, num byte, x ledger.Uint128) []byte {
	if x.IsZero() {
		return b
	}
	b = writeBytesHead(b, num, totalSize(x))
	b = writeUint(b, fieldUint128Lo, x.Lo)
	return writeUint(b, fieldUint128Hi, x.Hi)
}

// postingSize is a Posting message's body size, as api.PostingToProto (zero totals absent).
func postingSize(p *ledger.Posting) int {
	n := uintSize(p.Account) + uintSize(p.Timestamp) + uintSize(p.TransferID) + uintSize(uint64(p.Op)) +
		uintSize(p.Amount) + uintSize(p.Held) + uintSize(uint64(p.Day)) +
		totalFieldSize(p.After.DebitsPending) + totalFieldSize(p.After.DebitsPosted) +
		totalFieldSize(p.After.CreditsPending) + totalFieldSize(p.After.CreditsPosted)
	if p.Split {
		n += 2
	}
	return n
}

func writePosting(b []byte, p *ledger.Posting) []byte {
	b = writeUint(b, 1, p.Account)
	b = writeUint(b, 2, p.Timestamp)
	b = writeUint(b, 3, p.TransferID)
	b = writeUint(b, 4, uint64(p.Op))
	b = writeUint(b, 5, p.Amount)
	b = writeUint(b, 6, p.Held)
	if p.Split {
		b = append(b, 7<<3|byte(protowire.VarintType), 1)
	}
	b = writeTotal(b, 8, p.After.DebitsPending)
	b = writeTotal(b, 9, p.After.DebitsPosted)
	b = writeTotal(b, 10, p.After.CreditsPending)
	b = writeTotal(b, 11, p.After.CreditsPosted)
	return writeUint(b, 12, uint64(p.Day))
}

// wireRound is a ledger round's events in the window, encoded: no pointer for the garbage
// collector to follow, whatever the round's size.
type wireRound struct {
	b   []byte   // the events, each as AppendWire wrote it
	off []uint32 // off[i]: where event i starts in b; off[count] = len(b)
	// history: the postings (as event offsets in the round) whose History is set, which the
	// wire does not carry (nil: none); in-process followers get it back.
	history []uint32
}

// size is what the round costs the window, in bytes.
func (w *wireRound) size() int { return len(w.b) + 4*len(w.off) + 4*len(w.history) }

// encoder is the sequencer goroutine's: it encodes the rounds it numbers into the window.
type encoder struct {
	buf     []byte
	off     []uint32
	history []uint32
}

// encode encodes a ledger round numbered from first (nil if its encoding would pass what
// offsets can say: the window then keeps its structs).
func (x *encoder) encode(first uint64, ev *storage.RoundEvents) *wireRound {
	x.buf, x.off, x.history = x.buf[:0], x.off[:0], x.history[:0]
	seq := first
	add := func(e *Event) {
		x.off = append(x.off, uint32(min(len(x.buf), math.MaxUint32)))
		x.buf, _ = AppendWire(x.buf, e)
	}
	for i := range ev.Transfers {
		add(&Event{Seq: seq, Transfer: &ev.Transfers[i]})
		seq++
	}
	for i := range ev.Postings {
		if ev.Postings[i].History {
			x.history = append(x.history, uint32(seq-first))
		}
		add(&Event{Seq: seq, Posting: &ev.Postings[i]})
		seq++
	}
	if len(x.buf) > math.MaxUint32 {
		return nil
	}
	x.off = append(x.off, uint32(len(x.buf)))
	w := &wireRound{b: append([]byte(nil), x.buf...), off: append([]uint32(nil), x.off...)}
	if len(x.history) > 0 {
		w.history = append([]uint32(nil), x.history...)
	}
	// A window bound by bytes keeps the scratch from growing for ever after one huge round.
	if cap(x.buf) > 4*len(x.buf) && cap(x.buf) > 1<<20 {
		x.buf = nil
	}
	return w
}

// errWire: the window's bytes do not read back (a bug: they are the sequencer's own).
var errWire = errors.New("events: the window's encoding does not read back")

// decodeWire reads back one event of the window (b: AppendWire's bytes for it) into e, with
// its transfer record or posting written to t or p. It reads only what AppendWire writes
// (one-byte tags, varints and bytes), field by field without a call per field: in-process
// followers that want structs decode every event of the ring's ledger rounds.
func decodeWire(b []byte, e *Event, t *ledger.Transfer, p *ledger.Posting) error {
	num, _, body, i := nextField(b, 0)
	if i != len(b) || num != fieldResponseEvents || body == nil {
		return errWire
	}
	*e = Event{Exception: -1}
	for j := 0; j < len(body); {
		var v uint64
		var inner []byte
		if num, v, inner, j = nextField(body, j); j < 0 {
			return errWire
		}
		var err error
		switch {
		case num == fieldEventSequence && inner == nil:
			e.Seq = v
		case num == fieldEventTransfer && inner != nil:
			*t = ledger.Transfer{}
			e.Transfer, err = t, decodeTransfer(inner, t)
		case num == fieldEventPosting && inner != nil:
			*p = ledger.Posting{}
			e.Posting, err = p, decodePosting(inner, p)
		default:
			return errWire
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// nextField reads the field at b[i:]: its number and its varint's value, or its bytes (not
// nil, for a bytes field); next is where the next field starts, -1 when b does not read.
func nextField(b []byte, i int) (num byte, v uint64, inner []byte, next int) {
	if i >= len(b) || b[i] >= 0x80 {
		return 0, 0, nil, -1
	}
	tag := b[i]
	num = tag >> 3
	if v, i = readVarint(b, i+1); i < 0 {
		return 0, 0, nil, -1
	}
	switch protowire.Type(tag & 7) {
	case protowire.VarintType:
		return num, v, nil, i
	case protowire.BytesType:
		if v > uint64(len(b)-i) {
			return 0, 0, nil, -1
		}
		end := i + int(v)
		return num, 0, b[i:end:end], end
	}
	return 0, 0, nil, -1
}

// readVarint reads the varint at b[i:] and where it ends (-1: it does not read).
func readVarint(b []byte, i int) (uint64, int) {
	var v uint64
	for shift := uint(0); shift < 64 && i < len(b); shift += 7 {
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i
		}
	}
	return 0, -1
}

func decodeTransfer(b []byte, t *ledger.Transfer) error {
	for i := 0; i < len(b); {
		num, v, inner, next := nextField(b, i)
		if next < 0 || (inner != nil) != (num == 8 || num == 10) {
			return errWire
		}
		i = next
		switch num {
		case 1:
			t.ID = v
		case 2:
			t.DebitAccountID = v
		case 3:
			t.CreditAccountID = v
		case 4:
			t.Amount = v
		case 5:
			t.PendingID = v
		case 6:
			t.Ledger = uint32(v)
		case 7:
			t.Code = uint32(v)
		case 8:
			for j := 0; j < len(inner); {
				var f byte
				if f, v, _, j = nextField(inner, j); j < 0 || f < 1 || f > transferFlagFields || v != 1 {
					return errWire
				}
				t.Flags |= ledger.TransferFlags(1) << (f - 1)
			}
		case 9:
			t.Timeout = uint32(v)
		case 10:
			t.BizID = string(inner)
		case 11:
			t.UserData = v
		case 12:
			t.Timestamp = v
		case 13:
			t.State = ledger.TransferState(v)
		case 14:
			t.Result = ledger.TransferResult(v)
		default:
			return fmt.Errorf("%w: transfer field %d", errWire, num)
		}
	}
	return nil
}

func decodePosting(b []byte, p *ledger.Posting) error {
	for i := 0; i < len(b); {
		num, v, inner, next := nextField(b, i)
		if next < 0 || (inner != nil) != (num >= 8 && num <= 11) {
			return errWire
		}
		i = next
		var err error
		switch num {
		case 1:
			p.Account = v
		case 2:
			p.Timestamp = v
		case 3:
			p.TransferID = v
		case 4:
			p.Op = ledger.PostingOp(v)
		case 5:
			p.Amount = v
		case 6:
			p.Held = v
		case 7:
			p.Split = v != 0
		case 8:
			err = decodeTotal(inner, &p.After.DebitsPending)
		case 9:
			err = decodeTotal(inner, &p.After.DebitsPosted)
		case 10:
			err = decodeTotal(inner, &p.After.CreditsPending)
		case 11:
			err = decodeTotal(inner, &p.After.CreditsPosted)
		case 12:
			p.Day = ledger.Day(v)
		default:
			return fmt.Errorf("%w: posting field %d", errWire, num)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeTotal(b []byte, x *ledger.Uint128) error {
	for i := 0; i < len(b); {
		num, v, inner, next := nextField(b, i)
		switch {
		case next < 0 || inner != nil:
			return errWire
		case num == fieldUint128Lo:
			x.Lo = v
		case num == fieldUint128Hi:
			x.Hi = v
		default:
			return errWire
		}
		i = next
	}
	return nil
}
