package client

import (
	"slices"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// encodedRequest is a request message encoded already (encodeCreateTransfers): codec sends its
// bytes as they are, on every attempt.
type encodedRequest struct{ b []byte }

// codec is gRPC's proto codec, except for an encodedRequest. Its name is the proto codec's, so
// the call's content type stays application/grpc+proto.
type codec struct{ proto encoding.CodecV2 }

var wireCodec = codec{proto: encoding.GetCodecV2(protoenc.Name)}

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*encodedRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(m.b)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Name() string { return c.proto.Name() }

// Field numbers of CreateTransfersRequest, Transfer and TransferFlags
// (proto/ledger/v1/ledger.proto).
const (
	fieldRequestTransfers = 1

	fieldID        = 1
	fieldDebit     = 2
	fieldCredit    = 3
	fieldAmount    = 4
	fieldPendingID = 5
	fieldLedger    = 6
	fieldCode      = 7
	fieldFlags     = 8
	fieldTimeout   = 9
	fieldBizID     = 10
	fieldUserData  = 11
	fieldTimestamp = 12
	fieldState     = 13
	fieldResult    = 14

	fieldLinked = 1 // then pending, post_pending and void_pending, 2 to 4
)

// encodeCreateTransfers encodes a CreateTransfersRequest of ts as proto.Marshal does, byte for
// byte (TestEncodeCreateTransfersAsProto, FuzzEncodeCreateTransfers), without its reflection.
// false when a transfer is one it leaves to proto.Marshal: nil, with unknown fields, or a
// biz_id that is not UTF-8 (which proto.Marshal refuses).
func encodeCreateTransfers(ts []*ledgerv1.Transfer) ([]byte, bool) {
	n, ok := transfersSize(ts)
	if !ok {
		return nil, false
	}
	return appendTransfers(make([]byte, 0, n), fieldRequestTransfers, ts), true
}

// Field numbers of CreateTransfersStreamRequest.
const (
	fieldStreamTag       = 1
	fieldStreamTransfers = 2
)

// AppendCreateTransfersStreamRequest appends to dst a CreateTransfersStreamRequest of tag and
// ts (a request of CreateTransfersStream, which the client does not call: for a Go caller of
// the stream's own), encoded as proto.Marshal encodes it, byte for byte, without its
// reflection. false, and dst as it was, for a transfer it leaves to proto.Marshal: nil, with
// unknown fields, or a biz_id that is not UTF-8.
func AppendCreateTransfersStreamRequest(dst []byte, tag uint64, ts []*ledgerv1.Transfer) ([]byte, bool) {
	n, ok := transfersSize(ts)
	if !ok {
		return dst, false
	}
	dst = slices.Grow(dst, sizeUint(tag)+n)
	return appendTransfers(appendUint(dst, fieldStreamTag, tag), fieldStreamTransfers, ts), true
}

// transfersSize is the encoded size of ts as a repeated field (of a number under 16); false
// for a transfer left to proto.Marshal.
func transfersSize(ts []*ledgerv1.Transfer) (int, bool) {
	n := 0
	for _, t := range ts {
		if t == nil || len(t.ProtoReflect().GetUnknown()) > 0 || !utf8.ValidString(t.BizId) ||
			(t.Flags != nil && len(t.Flags.ProtoReflect().GetUnknown()) > 0) {
			return 0, false
		}
		n += 1 + protowire.SizeBytes(transferSize(t))
	}
	return n, true
}

func appendTransfers(b []byte, num protowire.Number, ts []*ledgerv1.Transfer) []byte {
	for _, t := range ts {
		b = append(b, tag(num, protowire.BytesType))
		b = protowire.AppendVarint(b, uint64(transferSize(t)))
		b = appendTransfer(b, t)
	}
	return b
}

// tag is a field's one-byte key (its number is under 16).
func tag(num protowire.Number, typ protowire.Type) byte { return byte(num)<<3 | byte(typ) }

// appendUint appends a varint field unless it is zero (proto3: not written).
func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	switch {
	case v == 0:
		return b
	case v < 0x80:
		return append(b, tag(num, protowire.VarintType), byte(v))
	}
	return protowire.AppendVarint(append(b, tag(num, protowire.VarintType)), v)
}

func sizeUint(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

// enum is an enum's varint: negative ones take ten bytes, as an int64's.
func enum(v int32) uint64 { return uint64(int64(v)) }

func transferSize(t *ledgerv1.Transfer) int {
	n := sizeUint(t.Id) + sizeUint(t.DebitAccountId) + sizeUint(t.CreditAccountId) + sizeUint(t.Amount) +
		sizeUint(t.PendingId) + sizeUint(uint64(t.Ledger)) + sizeUint(uint64(t.Code)) + sizeUint(uint64(t.Timeout)) +
		sizeUint(t.UserData) + sizeUint(t.Timestamp) + sizeUint(enum(int32(t.State))) + sizeUint(enum(int32(t.Result)))
	if t.Flags != nil {
		n += 1 + protowire.SizeBytes(flagsSize(t.Flags))
	}
	if t.BizId != "" {
		n += 1 + protowire.SizeBytes(len(t.BizId))
	}
	return n
}

// appendTransfer appends t's fields in their numbers' order, as proto.Marshal writes them.
func appendTransfer(b []byte, t *ledgerv1.Transfer) []byte {
	b = appendUint(b, fieldID, t.Id)
	b = appendUint(b, fieldDebit, t.DebitAccountId)
	b = appendUint(b, fieldCredit, t.CreditAccountId)
	b = appendUint(b, fieldAmount, t.Amount)
	b = appendUint(b, fieldPendingID, t.PendingId)
	b = appendUint(b, fieldLedger, uint64(t.Ledger))
	b = appendUint(b, fieldCode, uint64(t.Code))
	if f := t.Flags; f != nil {
		b = append(b, tag(fieldFlags, protowire.BytesType), byte(flagsSize(f))) // at most 8
		b = appendFlags(b, f)
	}
	b = appendUint(b, fieldTimeout, uint64(t.Timeout))
	if t.BizId != "" {
		b = protowire.AppendString(append(b, tag(fieldBizID, protowire.BytesType)), t.BizId)
	}
	b = appendUint(b, fieldUserData, t.UserData)
	b = appendUint(b, fieldTimestamp, t.Timestamp)
	b = appendUint(b, fieldState, enum(int32(t.State)))
	return appendUint(b, fieldResult, enum(int32(t.Result)))
}

func flagBits(f *ledgerv1.TransferFlags) [4]bool {
	return [4]bool{f.Linked, f.Pending, f.PostPending, f.VoidPending}
}

func flagsSize(f *ledgerv1.TransferFlags) int {
	n := 0
	for _, on := range flagBits(f) {
		if on {
			n += 2 // its key and the varint 1
		}
	}
	return n
}

func appendFlags(b []byte, f *ledgerv1.TransferFlags) []byte {
	for i, on := range flagBits(f) {
		if on {
			b = append(b, tag(protowire.Number(fieldLinked+i), protowire.VarintType), 1)
		}
	}
	return b
}
