package bench

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// TestScanEventsAcrossBuffers: the subscriber's scan reads the first sequence and the count
// of a SubscribeResponse however gRPC split its bytes into buffers, and refuses one cut
// short or with an event out of sequence.
func TestScanEventsAcrossBuffers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		first := 1 + rng.Uint64N(1<<rng.IntN(60))
		n := 1 + rng.IntN(40)
		resp := &ledgerv1.SubscribeResponse{}
		for i := range n {
			ev := &ledgerv1.Event{Sequence: first + uint64(i)}
			if rng.IntN(2) == 0 {
				ev.Kind = &ledgerv1.Event_Transfer{Transfer: &ledgerv1.Transfer{Id: rng.Uint64(),
					BizId: strings.Repeat("b", rng.IntN(300)), Amount: rng.Uint64N(1000)}}
			} else {
				ev.Kind = &ledgerv1.Event_Posting{Posting: &ledgerv1.Posting{AccountId: rng.Uint64(), Amount: rng.Uint64()}}
			}
			resp.Events = append(resp.Events, ev)
		}
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got, gotN, err := scanEvents(split(rng, b))
		if err != nil || got != first || gotN != n {
			t.Fatalf("scan: first %d, %d events, %v; want %d, %d", got, gotN, err, first, n)
		}
		if n > 1 {
			bad := proto.Clone(resp).(*ledgerv1.SubscribeResponse)
			k := 1 + rng.IntN(n-1)
			// One event duplicated, or one or two skipped.
			bad.Events[k].Sequence += []uint64{math.MaxUint64, 1, 2}[rng.IntN(3)]
			bb, err := proto.Marshal(bad)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := scanEvents(split(rng, bb)); err == nil {
				t.Fatalf("event %d at %d after %d was read", k, bad.Events[k].Sequence, bad.Events[k-1].Sequence)
			}
		}
		// Cut inside the last event: from 1 byte to all of it but its first.
		last, _ := proto.Marshal(&ledgerv1.SubscribeResponse{Events: resp.Events[n-1:]})
		cut := len(b) - 1 - rng.IntN(len(last)-1)
		if _, _, err := scanEvents(split(rng, b[:cut])); err == nil {
			t.Fatalf("a response cut short (%d of %d bytes) was read", cut, len(b))
		}
	}
}

// split cuts b into buffers at random places (some empty).
func split(rng *rand.Rand, b []byte) mem.BufferSlice {
	var out mem.BufferSlice
	for len(b) > 0 {
		k := rng.IntN(min(len(b), 64) + 1)
		out = append(out, mem.SliceBuffer(b[:k]))
		b = b[k:]
	}
	return out
}
