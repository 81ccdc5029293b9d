package api

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
)

// The event stream is the one message that goes out at the write rate: three events a
// transfer. protobuf-go's generic marshalling took about 0.75 us an event here (reflection
// over each field of an Event, its Posting and four Uint128), more than the stream's budget,
// so EncodeEvents writes a SubscribeResponse with protowire directly: the same bytes
// proto.Marshal writes for what EventToProto returns (TestEncodeEventsMatches checks it, so a
// field added to events.proto must be added here). Orders and exceptions, which are few, go
// through proto.Marshal.

// Field numbers of events.proto and ledger.proto.
const (
	fieldResponseEvents = 1

	fieldEventSequence  = 1
	fieldEventTransfer  = 2
	fieldEventPosting   = 3
	fieldEventOrder     = 4
	fieldEventException = 5

	fieldUint128Lo = 1
	fieldUint128Hi = 2
)

// EncodeEvents appends the batch as a SubscribeResponse to dst. scratch is reused between
// calls (pass the one it returns).
func EncodeEvents(dst []byte, batch []events.Event, scratch *EncodeScratch) []byte {
	for i := range batch {
		ev := &batch[i]
		body := protowire.AppendTag(scratch.event[:0], fieldEventSequence, protowire.VarintType)
		body = protowire.AppendVarint(body, ev.Seq)
		var field protowire.Number
		inner := scratch.inner[:0]
		switch {
		case ev.Transfer != nil:
			field, inner = fieldEventTransfer, appendTransfer(inner, ev.Transfer)
		case ev.Posting != nil:
			field, inner = fieldEventPosting, appendPosting(inner, ev.Posting)
		case ev.Exception >= 0:
			field = fieldEventException
			inner, _ = proto.MarshalOptions{Deterministic: true}.MarshalAppend(inner, ExceptionToProto(ev.Order, ev.Exception))
		default:
			field = fieldEventOrder
			inner, _ = proto.MarshalOptions{Deterministic: true}.MarshalAppend(inner, OrderToProto(ev.Order))
		}
		body = appendMessage(body, field, inner)
		dst = appendMessage(dst, fieldResponseEvents, body)
		scratch.event, scratch.inner = body, inner
	}
	return dst
}

// EncodeScratch is EncodeEvents' reused buffers.
type EncodeScratch struct{ event, inner []byte }

func appendMessage(b []byte, n protowire.Number, m []byte) []byte {
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, m)
}

func appendUint(b []byte, n protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBool(b []byte, n protowire.Number, v bool) []byte {
	if !v {
		return b
	}
	return appendUint(b, n, 1)
}

// appendTransfer is a Transfer message's body, as TransferToProto (flags always present).
func appendTransfer(b []byte, t *ledger.Transfer) []byte {
	b = appendUint(b, 1, t.ID)
	b = appendUint(b, 2, t.DebitAccountID)
	b = appendUint(b, 3, t.CreditAccountID)
	b = appendUint(b, 4, t.Amount)
	b = appendUint(b, 5, t.PendingID)
	b = appendUint(b, 6, uint64(t.Ledger))
	b = appendUint(b, 7, uint64(t.Code))
	var flags [8]byte
	f := appendBool(flags[:0], 1, t.Flags&ledger.TransferLinked != 0)
	f = appendBool(f, 2, t.Flags&ledger.TransferPending != 0)
	f = appendBool(f, 3, t.Flags&ledger.TransferPostPending != 0)
	f = appendBool(f, 4, t.Flags&ledger.TransferVoidPending != 0)
	b = appendMessage(b, 8, f)
	b = appendUint(b, 9, uint64(t.Timeout))
	if t.BizID != "" {
		b = protowire.AppendTag(b, 10, protowire.BytesType)
		b = protowire.AppendString(b, t.BizID)
	}
	b = appendUint(b, 11, t.UserData)
	b = appendUint(b, 12, t.Timestamp)
	b = appendUint(b, 13, uint64(t.State))
	return appendUint(b, 14, uint64(t.Result))
}

// appendPosting is a Posting message's body, as PostingToProto (zero totals absent).
func appendPosting(b []byte, p *ledger.Posting) []byte {
	b = appendUint(b, 1, p.Account)
	b = appendUint(b, 2, p.Timestamp)
	b = appendUint(b, 3, p.TransferID)
	b = appendUint(b, 4, uint64(p.Op))
	b = appendUint(b, 5, p.Amount)
	b = appendUint(b, 6, p.Held)
	b = appendBool(b, 7, p.Split)
	b = appendTotal(b, 8, p.After.DebitsPending)
	b = appendTotal(b, 9, p.After.DebitsPosted)
	b = appendTotal(b, 10, p.After.CreditsPending)
	b = appendTotal(b, 11, p.After.CreditsPosted)
	return appendUint(b, 12, uint64(p.Day))
}

func appendTotal(b []byte, n protowire.Number, x ledger.Uint128) []byte {
	if x.IsZero() {
		return b
	}
	var buf [22]byte
	m := appendUint(buf[:0], fieldUint128Lo, x.Lo)
	m = appendUint(m, fieldUint128Hi, x.Hi)
	return appendMessage(b, n, m)
}

// encoded is a message encoded already: serverCodec sends its bytes as they are.
type encoded struct{ b []byte }

// serverCodec is gRPC's proto codec, except for encoded messages.
type serverCodec struct{ proto encoding.CodecV2 }

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encoded); ok {
		// The transport may hold the bytes after SendMsg returns: each message has its own.
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c serverCodec) Name() string { return c.proto.Name() }
