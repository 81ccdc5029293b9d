package bench

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends protobuf messages and receives raw bytes: the bench's subscriber reads only
// the sequences of the events (scanEvents), so that the run measures what the stream costs
// the server, not what decoding every event costs a consumer sharing its two cores.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }

func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}

// scanEvents reads a SubscribeResponse's events' sequences (field 1 of each event, field 1
// of the response): the first and how many.
func scanEvents(b []byte) (first uint64, n int, err error) {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 || num != 1 || typ != protowire.BytesType {
			return 0, 0, fmt.Errorf("bench: not a SubscribeResponse")
		}
		b = b[l:]
		ev, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return 0, 0, fmt.Errorf("bench: truncated event")
		}
		b = b[l:]
		if n == 0 {
			num, typ, l := protowire.ConsumeTag(ev)
			if l < 0 || num != 1 || typ != protowire.VarintType {
				return 0, 0, fmt.Errorf("bench: an event without its sequence first")
			}
			if first, l = protowire.ConsumeVarint(ev[l:]); l < 0 {
				return 0, 0, fmt.Errorf("bench: bad sequence")
			}
		}
		n++
	}
	return first, n, nil
}
