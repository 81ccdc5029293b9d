package events

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ledgercore/ledger/ledger"
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
// parent) cost twice as much.
func AppendWire(dst []byte, e *Event) ([]byte, bool) {
	var n int
	switch {
	case e.Transfer != nil:
		n = transferSize(e.Transfer)
	case e.Posting != nil:
		n = postingSize(e.Posting)
	default:
		return dst, false
	}
	width := sizeVarint(e.Seq)
	size := eventSize(width, n)
	dst = slices.Grow(dst, size)
	start := len(dst)
	dst = dst[:start+size]
	seqAt, i := putEventHead(dst, start, width, n, e.Transfer != nil)
	putVarint(dst, seqAt, e.Seq)
	if e.Transfer != nil {
		i = putTransfer(dst, i, e.Transfer)
	} else {
		i = putPosting(dst, i, e.Posting)
	}
	if i-start != size {
		// INVARIANT: the sizes are the writes' (TestEncodeEventsMatches).
		panic(fmt.Sprintf("events: an event sized %d bytes was written in %d", size, i-start))
	}
	return dst, true
}

// eventSize is the size of an event's field in a SubscribeResponse: a sequence of width bytes
// and a transfer record or posting message of n bytes.
func eventSize(width, n int) int {
	body := 1 + width + 1 + sizeVarint(uint64(n)) + n
	return 1 + sizeVarint(uint64(body)) + body
}

// putEventHead writes the head of an event's field at b[i:] (eventSize(width, n) bytes from
// i): its tag and length, the sequence's tag, the transfer record's or posting's tag and
// length. It leaves the width bytes of the sequence for the caller and returns where they go
// and where the message goes (n bytes).
func putEventHead(b []byte, i, width, n int, transfer bool) (seqAt, msgAt int) {
	b[i] = fieldResponseEvents<<3 | byte(protowire.BytesType)
	i = putVarint(b, i+1, uint64(1+width+1+sizeVarint(uint64(n))+n))
	b[i] = fieldEventSequence<<3 | byte(protowire.VarintType)
	seqAt = i + 1
	i = seqAt + width
	b[i] = fieldEventPosting<<3 | byte(protowire.BytesType)
	if transfer {
		b[i] = fieldEventTransfer<<3 | byte(protowire.BytesType)
	}
	return seqAt, putVarint(b, i+1, uint64(n))
}

// sizeVarint is protowire.SizeVarint, inlined.
func sizeVarint(v uint64) int { return int((9*uint32(bits.Len64(v)) + 64) / 64) }

// putVarint writes v as a varint at b[i:] and returns where it ends. (Writing eight bytes at
// once, the seven-bit groups spread with shifts and masks, measured a third slower on the
// bench's rounds, whose varints are mostly one or two bytes; binary.PutUvarint on b[i:],
// 75-89 ns an event in BenchmarkWindowEncode against 66-79.)
func putVarint(b []byte, i int, v uint64) int {
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

// uintSize is a varint field's size (absent when 0); fields are below 16: one-byte tags.
func uintSize(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + sizeVarint(v)
}

// putUint writes field num, a varint, at b[i:] (nothing when v is 0) and returns where it
// ends.
func putUint(b []byte, i int, num byte, v uint64) int {
	if v == 0 {
		return i
	}
	b[i] = num<<3 | byte(protowire.VarintType)
	return putVarint(b, i+1, v)
}

// putBytesHead writes the tag and length of field num, n bytes, at b[i:].
func putBytesHead(b []byte, i int, num byte, n int) int {
	b[i] = num<<3 | byte(protowire.BytesType)
	return putVarint(b, i+1, uint64(n))
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

// putTransfer writes t's message (transferSize bytes) at b[i:].
func putTransfer(b []byte, i int, t *ledger.Transfer) int {
	i = putUint(b, i, 1, t.ID)
	i = putUint(b, i, 2, t.DebitAccountID)
	i = putUint(b, i, 3, t.CreditAccountID)
	i = putUint(b, i, 4, t.Amount)
	i = putUint(b, i, 5, t.PendingID)
	i = putUint(b, i, 6, uint64(t.Ledger))
	i = putUint(b, i, 7, uint64(t.Code))
	f := t.Flags & (1<<transferFlagFields - 1)
	i = putBytesHead(b, i, 8, 2*bits.OnesCount16(uint16(f)))
	for k := byte(1); f != 0; k, f = k+1, f>>1 {
		if f&1 != 0 {
			b[i], b[i+1] = k<<3|byte(protowire.VarintType), 1
			i += 2
		}
	}
	i = putUint(b, i, 9, uint64(t.Timeout))
	if t.BizID != "" {
		i = putBytesHead(b, i, 10, len(t.BizID))
		i += copy(b[i:], t.BizID)
	}
	i = putUint(b, i, 11, t.UserData)
	i = putUint(b, i, 12, t.Timestamp)
	i = putUint(b, i, 13, uint64(t.State))
	return putUint(b, i, 14, uint64(t.Result))
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

func putTotal(b []byte, i int, num byte, x ledger.Uint128) int {
	if x.IsZero() {
		return i
	}
	// A Uint128 message is at most 22 bytes: its length takes one byte, written after it.
	j := putUint(b, i+2, fieldUint128Lo, x.Lo)
	j = putUint(b, j, fieldUint128Hi, x.Hi)
	b[i], b[i+1] = num<<3|byte(protowire.BytesType), byte(j-i-2)
	return j
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

// putPosting writes p's message (postingSize bytes) at b[i:].
func putPosting(b []byte, i int, p *ledger.Posting) int {
	i = putUint(b, i, 1, p.Account)
	i = putUint(b, i, 2, p.Timestamp)
	i = putUint(b, i, 3, p.TransferID)
	i = putUint(b, i, 4, uint64(p.Op))
	i = putUint(b, i, 5, p.Amount)
	i = putUint(b, i, 6, p.Held)
	if p.Split {
		b[i], b[i+1] = 7<<3|byte(protowire.VarintType), 1
		i += 2
	}
	i = putTotal(b, i, 8, p.After.DebitsPending)
	i = putTotal(b, i, 9, p.After.DebitsPosted)
	i = putTotal(b, i, 10, p.After.CreditsPending)
	i = putTotal(b, i, 11, p.After.CreditsPosted)
	return putUint(b, i, 12, uint64(p.Day))
}

// wireRound is a ledger round's events in the window, encoded: no pointer for the garbage
// collector to follow, whatever the round's size.
type wireRound struct {
	b   []byte   // the events, each as AppendWire writes it (its sequence blank until numbered)
	off []uint32 // off[i]: where event i starts in b; off[count] = len(b)
	// history: the postings (as event offsets in the round) whose History is set, which the
	// wire does not carry (nil: none); in-process followers get it back.
	history []uint32
	// width: the round is not numbered yet, and each event has width bytes where its
	// sequence goes (encodeRound); 0 once numbered.
	width int
}

// size is what the round costs the window, in bytes.
func (w *wireRound) size() int { return len(w.b) + 4*len(w.off) + 4*len(w.history) }

// encodeRound encodes a ledger round's transfer records and postings (in the stream's
// order) as its committer hands them over (Sequencer.CommittedLedger), before it has its
// sequences: each event as AppendWire writes it, with width bytes left for its sequence (the
// width the sequences are expected to have), which number writes once the sequencer has
// numbered the round. It reads ts and ps only during the call. Nil: the encoding would pass
// what offsets can say (the caller hands the structs instead).
//
// It writes in one pass, without sizing each message first: a message is written where it
// goes if its lengths take a byte each (as the bench's do), its head after it, and it is
// moved in the rare case they take more. The round is written into a scratch buffer and
// copied out at its size.
func encodeRound(ts []ledger.Transfer, ps []ledger.Posting, width int) *wireRound {
	scratch := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(scratch)
	b := *scratch
	off := make([]uint32, len(ts)+len(ps)+1)
	var history []uint32
	i := 0
	for k := range ts {
		t := &ts[k]
		b = slices.Grow(b[:i], eventHeadMax+transferMax+len(t.BizID))
		b = b[:cap(b)]
		i = finishEvent(b, i, width, putTransfer(b, i+shortHead+width, t), true)
		if i > math.MaxUint32 {
			return nil
		}
		off[k+1] = uint32(i)
	}
	for k := range ps {
		p := &ps[k]
		if p.History {
			history = append(history, uint32(len(ts)+k))
		}
		b = slices.Grow(b[:i], eventHeadMax+postingMax)
		b = b[:cap(b)]
		i = finishEvent(b, i, width, putPosting(b, i+shortHead+width, p), false)
		if i > math.MaxUint32 {
			return nil
		}
		off[len(ts)+k+1] = uint32(i)
	}
	*scratch = b[:0]
	if cap(b) > scratchKeepMax {
		*scratch = nil
	}
	return &wireRound{b: slices.Clone(b[:i]), off: off, history: history, width: width}
}

// Bounds of encodeRound's writes (a sequence's width not included in shortHead and
// eventHeadMax's ten bytes for it).
const (
	// shortHead is an event's head with lengths of a byte each: the tags and lengths of the
	// event and its message, the sequence's tag.
	shortHead = 5
	// eventHeadMax is the longest head: two tags, the sequence's tag and ten bytes, two
	// lengths of up to ten bytes.
	eventHeadMax = 3 + 10 + 2*10
	// transferMax is a Transfer message's longest size without its biz id's bytes: 12
	// varint fields of up to 11 bytes, the flags (2 + 4*2), the biz id's tag and length.
	transferMax = 12*11 + 10 + 11
	// postingMax is a Posting message's longest size: 7 varint fields of up to 11 bytes,
	// split (2), four totals of 2 + 2*11.
	postingMax = 7*11 + 2 + 4*24
	// scratchKeepMax: a scratch buffer larger than this after a huge round is dropped.
	scratchKeepMax = 8 << 20
)

// scratchPool holds encodeRound's scratch buffers (committers encode at the same time).
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

// finishEvent writes the head of the event at b[i:], whose message was written from
// i+shortHead+width to end, moving the message if its head is longer; it returns where the
// event ends.
func finishEvent(b []byte, i, width, end int, transfer bool) int {
	m := end - (i + shortHead + width)
	if body := 1 + width + 2 + m; body < 0x80 && m < 0x80 {
		b[i], b[i+1], b[i+2] = fieldResponseEvents<<3|byte(protowire.BytesType), byte(body),
			fieldEventSequence<<3|byte(protowire.VarintType)
		b[i+3+width] = fieldEventPosting<<3 | byte(protowire.BytesType)
		if transfer {
			b[i+3+width] = fieldEventTransfer<<3 | byte(protowire.BytesType)
		}
		b[i+4+width] = byte(m)
		return end
	}
	head := eventSize(width, m) - m
	copy(b[i+head:], b[i+shortHead+width:end])
	if _, at := putEventHead(b, i, width, m, transfer); at != i+head {
		panic("events: an event's head is not its size") // INVARIANT: eventSize is putEventHead's
	}
	return i + head + m
}

// number writes the round's sequences, from first, and returns the round numbered: w itself,
// written in place when every sequence has the width encodeRound left for it, else a copy
// with each event's head written again for its sequence's width (a round whose sequences
// cross a varint length, or whose width was guessed before others took sequences).
func (w *wireRound) number(first uint64) *wireRound {
	n := len(w.off) - 1
	if w.width == 0 {
		panic("events: numbering a round numbered")
	}
	if n == 0 {
		panic("events: numbering a round without events") // CommittedLedger hands none
	}
	// INVARIANT (every event's head): as putEventHead wrote it, with width bytes for the
	// sequence; seqAt finds the sequence's place.
	seqAt := func(k int) int {
		i := int(w.off[k])
		j := i + 2
		if w.b[i+1] >= 0x80 {
			_, j = readVarint(w.b, i+1)
		}
		if w.b[i] != fieldResponseEvents<<3|byte(protowire.BytesType) || j < 0 ||
			w.b[j] != fieldEventSequence<<3|byte(protowire.VarintType) {
			panic(fmt.Sprintf("events: event %d of an unnumbered round does not read", k))
		}
		return j + 1
	}
	last := first + uint64(n) - 1
	if sizeVarint(first) == w.width && sizeVarint(last) == w.width {
		for k := range n {
			putVarint(w.b, seqAt(k), first+uint64(k))
		}
		w.width = 0
		return w
	}
	size := 0
	for k := range n {
		m := int(w.off[k+1]) - seqAt(k) - w.width // the message with its tag and length
		size += 1 + sizeVarint(uint64(1+sizeVarint(first+uint64(k))+m)) + 1 + sizeVarint(first+uint64(k)) + m
	}
	nw := &wireRound{b: make([]byte, size), off: make([]uint32, n+1), history: w.history}
	i := 0
	for k := range n {
		seq := first + uint64(k)
		at := seqAt(k) + w.width
		rest := w.b[at:w.off[k+1]]
		nw.b[i] = fieldResponseEvents<<3 | byte(protowire.BytesType)
		i = putVarint(nw.b, i+1, uint64(1+sizeVarint(seq)+len(rest)))
		nw.b[i] = fieldEventSequence<<3 | byte(protowire.VarintType)
		i = putVarint(nw.b, i+1, seq)
		i += copy(nw.b[i:], rest)
		nw.off[k+1] = uint32(i)
	}
	if i != size {
		panic(fmt.Sprintf("events: a round sized %d bytes was numbered in %d", size, i))
	}
	return nw
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
