package bench

import (
	"fmt"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends protobuf messages and reads only the sequences of a SubscribeResponse's
// events, in the buffers gRPC received them in (no copy into one slice, no decoding): the
// bench's subscriber measures what the stream costs the server, not what decoding every
// event costs a consumer sharing its two cores.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := proto.Marshal(v.(proto.Message))
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

// scanned is what rawCodec reads of a SubscribeResponse: its first sequence and how many
// events it has.
type scanned struct {
	first uint64
	n     int
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	s := v.(*scanned)
	var err error
	s.first, s.n, err = scanEvents(data)
	return err
}

// scanEvents reads a SubscribeResponse's events' sequences (field 1 of each event, field 1
// of the response), across the buffers it came in: the first and how many, each event's
// sequence checked to follow the one before.
func scanEvents(data mem.BufferSlice) (first uint64, n int, err error) {
	r := byteReader{data: data}
	for !r.done() {
		// An event's head (tags, its length, its sequence) is at most 22 bytes: read it in
		// place when the buffer holds that much, else byte by byte across buffers.
		var tag, size, seqTag, seq uint64
		at := r.read
		if b := r.buf; len(b) >= 22 {
			var k1, k2, k3, k4 int
			tag, k1 = protowire.ConsumeVarint(b)
			size, k2 = protowire.ConsumeVarint(b[max(k1, 0):])
			seqTag, k3 = protowire.ConsumeVarint(b[max(k1+k2, 0):])
			seq, k4 = protowire.ConsumeVarint(b[max(k1+k2+k3, 0):])
			if k1 < 0 || k2 < 0 || k3 < 0 || k4 < 0 {
				return 0, 0, fmt.Errorf("bench: not a SubscribeResponse")
			}
			r.buf, r.read = b[k1+k2+k3+k4:], r.read+k1+k2+k3+k4
			at += k1 + k2
		} else {
			var ok1, ok2, ok3, ok4 bool
			tag, ok1 = r.varint()
			size, ok2 = r.varint()
			at = r.read
			seqTag, ok3 = r.varint()
			seq, ok4 = r.varint()
			if !ok1 || !ok2 || !ok3 || !ok4 {
				return 0, 0, fmt.Errorf("bench: truncated event")
			}
		}
		switch {
		case tag != 1<<3|uint64(protowire.BytesType):
			return 0, 0, fmt.Errorf("bench: not a SubscribeResponse")
		case seqTag != 1<<3|uint64(protowire.VarintType):
			return 0, 0, fmt.Errorf("bench: an event without its sequence first")
		case n == 0:
			first = seq
		case seq != first+uint64(n):
			return 0, 0, fmt.Errorf("bench: event %d after %d in one message", seq, first+uint64(n)-1)
		}
		if size < uint64(r.read-at) || !r.skip(size-uint64(r.read-at)) {
			return 0, 0, fmt.Errorf("bench: truncated event")
		}
		n++
	}
	return first, n, nil
}

// byteReader reads varints from, and skips over, a BufferSlice's bytes in place.
type byteReader struct {
	data mem.BufferSlice
	buf  []byte // what is left of the current buffer
	next int    // the next buffer of data
	read int    // bytes read so far
}

// done reports whether every byte was read.
func (r *byteReader) done() bool {
	for len(r.buf) == 0 {
		if r.next == len(r.data) {
			return true
		}
		r.buf = r.data[r.next].ReadOnlyData()
		r.next++
	}
	return false
}

func (r *byteReader) varint() (uint64, bool) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.done() {
			return 0, false
		}
		c := r.buf[0]
		r.buf = r.buf[1:]
		r.read++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, true
		}
	}
	return 0, false
}

func (r *byteReader) skip(n uint64) bool {
	for n > 0 {
		if r.done() {
			return false
		}
		k := min(n, uint64(len(r.buf)))
		r.buf = r.buf[k:]
		r.read += int(k)
		n -= k
	}
	return true
}
