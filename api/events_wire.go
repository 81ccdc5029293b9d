package api

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/events"
)

// The event stream is the one message that goes out at the write rate: three events a
// transfer. protobuf-go's generic marshalling took about 0.75 us an event here (reflection
// over each field of an Event, its Posting and four Uint128), more than the stream's budget,
// so transfer and posting events are written with protowire directly (events.AppendWire: the
// sequencer keeps its window of recent events in that encoding, and subscribers are sent
// those bytes as they are): the same bytes proto.Marshal writes for what EventToProto returns
// (TestEncodeEventsMatches checks it, so a field added to ledger.proto's Transfer or Posting
// must be added there). Orders and exceptions, which are few, go through proto.Marshal.

// Field numbers of ledger.proto.
const (
	fieldResponseEvents = 1

	fieldEventSequence  = 1
	fieldEventOrder     = 4
	fieldEventException = 5
)

// EncodeEvents appends the batch as a SubscribeResponse to dst. scratch is reused between
// calls (pass the one it returns).
func EncodeEvents(dst []byte, batch []events.Event, scratch *EncodeScratch) []byte {
	for i := range batch {
		ev := &batch[i]
		var ok bool
		if dst, ok = events.AppendWire(dst, ev); ok {
			continue
		}
		body := protowire.AppendTag(scratch.event[:0], fieldEventSequence, protowire.VarintType)
		body = protowire.AppendVarint(body, ev.Seq)
		var field protowire.Number
		inner := scratch.inner[:0]
		if ev.Exception >= 0 {
			field = fieldEventException
			inner, _ = proto.MarshalOptions{Deterministic: true}.MarshalAppend(inner, ExceptionToProto(ev.Order, ev.Exception))
		} else {
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

// encoded is a message encoded already: serverCodec sends its bytes as they are (parts, one
// after the other: the sequencer's window, shared, is never changed).
type encoded struct{ parts [][]byte }

// serverCodec is gRPC's proto codec, except for encoded messages (sent as they are),
// streamRequest (decoded by decodeStreamRequest) and createTransfersRequest (by
// decodeCreateTransfersRequest).
type serverCodec struct {
	proto encoding.CodecV2
	pool  mem.BufferPool // where a request's frames are joined (nil: mem.DefaultBufferPool)
}

func (c serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encoded); ok {
		// The transport may hold the bytes after SendMsg returns: they are the window's
		// (never changed) or the message's own.
		out := make(mem.BufferSlice, len(m.parts))
		for i, b := range m.parts {
			out[i] = mem.SliceBuffer(b)
		}
		return out, nil
	}
	return c.proto.Marshal(v)
}

func (c serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch v.(type) {
	case *streamRequest, *createTransfersRequest:
	default:
		return c.proto.Unmarshal(data, v)
	}
	// A message past 16 KiB comes in several buffers (HTTP/2 frames): joined in a buffer of
	// gRPC's pool, given back after (the decoded transfers copy what they keep: biz ids).
	pool := c.pool
	if pool == nil {
		pool = mem.DefaultBufferPool()
	}
	buf := data.MaterializeToBuffer(pool)
	defer buf.Free()
	switch r := v.(type) {
	case *streamRequest:
		if err := decodeStreamRequest(buf.ReadOnlyData(), r); err != nil {
			r.err = invalid("the request cannot be decoded: %v", err)
		}
	case *createTransfersRequest:
		if err := decodeCreateTransfersRequest(buf.ReadOnlyData(), r); err != nil {
			r.err = invalid("the request cannot be decoded: %v", err)
		}
	}
	return nil
}

func (c serverCodec) Name() string { return c.proto.Name() }
