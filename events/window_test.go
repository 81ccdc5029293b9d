package events_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// wireFollower follows the stream with FollowWire, as a gRPC subscriber does, and keeps its
// bytes; it checks that each batch holds the sequences it says, in order, with no gap.
type wireFollower struct {
	mu     sync.Mutex
	out    bytes.Buffer
	from   uint64
	next   uint64
	err    error
	hold   chan struct{} // closed: the follower reads on (nil: it never waits)
	cancel context.CancelFunc
	done   chan struct{}
}

func followWire(t *testing.T, seq *events.Sequencer, from uint64, hold chan struct{}) *wireFollower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &wireFollower{from: from, next: from, hold: hold, cancel: cancel, done: make(chan struct{})}
	var scratch api.EncodeScratch
	encode := func(dst []byte, batch []events.Event) []byte { return api.EncodeEvents(dst, batch, &scratch) }
	go func() {
		defer close(f.done)
		err := seq.FollowWire(ctx, from, events.FollowOptions{Coalesce: true}, encode, func(b events.WireBatch) error {
			if f.hold != nil {
				<-f.hold
			}
			var msg []byte
			for _, p := range b.Parts {
				msg = append(msg, p...)
			}
			var resp ledgerv1.SubscribeResponse
			if err := proto.Unmarshal(msg, &resp); err != nil {
				return err
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(resp.Events) != b.Events || b.First != f.next {
				return errors.New("a batch says other events than it holds")
			}
			for _, e := range resp.Events {
				if e.Sequence != f.next {
					return errors.New("a gap or a repeat")
				}
				f.next++
			}
			f.out.Write(msg)
			return nil
		})
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
	}()
	return f
}

// stopAt waits until the follower has read up to last, and stops it.
func (f *wireFollower) stopAt(t *testing.T, last uint64) []byte {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		f.mu.Lock()
		next, err := f.next, f.err
		f.mu.Unlock()
		if next > last {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("the wire follower stopped at %d of %d: %v", next-1, last, err)
		}
	}
	f.cancel()
	<-f.done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil && !errors.Is(f.err, context.Canceled) {
		t.Fatalf("the wire follower: %v", f.err)
	}
	// It may have read on past last (holds expiring): its bytes up to last's event.
	b := f.out.Bytes()
	at := 0
	for seq := f.from; seq <= last; seq++ {
		_, _, k := protowire.ConsumeField(b[at:])
		if k < 0 {
			t.Fatalf("event %d does not read: %v", seq, protowire.ParseError(k))
		}
		at += k
	}
	return b[:at]
}

// storedWire is what the old per-follower encoding sent: the events read back from the
// store (structs, never in the window) encoded by api.EncodeEvents, from 1 to last.
func storedWire(t *testing.T, seq *events.Sequencer, last uint64) []byte {
	t.Helper()
	var out []byte
	var scratch api.EncodeScratch
	done := errors.New("done")
	err := seq.Follow(context.Background(), 1, events.FollowOptions{}, func(batch []events.Event) error {
		out = api.EncodeEvents(out, batch, &scratch)
		if batch[len(batch)-1].Seq >= last {
			return done
		}
		return nil
	})
	if !errors.Is(err, done) {
		t.Fatal(err)
	}
	return out
}

// TestWindowBytesEqualPerFollowerEncoding: the bytes a subscriber is sent from the window
// (encoded once by the sequencer) equal, byte for byte, what the per-follower encoding
// (api.EncodeEvents) makes of the same events read back from the store after a restart.
func TestWindowBytesEqualPerFollowerEncoding(t *testing.T) {
	fs := vfs.NewMem()
	n := startNode(t, fs, 0)
	openAccounts(t, n.l)
	f := followWire(t, n.seq, 1, nil)
	for deadline := time.Now().Add(10 * time.Second); !n.seq.Capturing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the follower never attached")
		}
	}
	reads := n.seq.Stats.StoreReads.Load()
	workload(t, n.l, rand.New(rand.NewPCG(21, 22)), 1000, 30)
	time.Sleep(1200 * time.Millisecond) // holds with a 1 s timeout expire
	last := n.seq.Last()
	live := f.stopAt(t, last)
	if got := n.seq.Stats.StoreReads.Load() - reads; got != 0 {
		t.Fatalf("the live follower read %d batches from the store, not the window", got)
	}
	if n.seq.Stats.RingBytes.Load() <= 0 || n.seq.Stats.RingEvents.Load() <= 0 {
		t.Fatalf("window: %d events, %d bytes", n.seq.Stats.RingEvents.Load(), n.seq.Stats.RingBytes.Load())
	}
	n.stop(t)
	n = startNode(t, fs, 0)
	defer n.stop(t)
	want := storedWire(t, n.seq, last)
	if last < 2000 || !bytes.Equal(live, want) {
		t.Fatalf("%d events: the window's bytes (%d) differ from the per-follower encoding's (%d)", last, len(live), len(want))
	}
}

// TestWindowBoundedByBytes: a window bounded by bytes keeps no more than its bound; a
// follower that falls out of it reads the store, gets every event once and in order, the
// same bytes as the per-follower encoding, and comes back to the window once it has caught
// up.
func TestWindowBoundedByBytes(t *testing.T) {
	const windowBytes = 16 << 10
	n := startNode(t, vfs.NewMem(), 0)
	defer n.stop(t)
	events.SetRingLimits(n.seq, events.RingEventsMax, windowBytes)
	openAccounts(t, n.l)
	hold := make(chan struct{})
	f := followWire(t, n.seq, 1, hold)
	for deadline := time.Now().Add(10 * time.Second); !n.seq.Capturing(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the follower never attached")
		}
	}
	workload(t, n.l, rand.New(rand.NewPCG(23, 24)), 1000, 40)
	// Shown rounds are in the window once the stream's last sequence moved past them.
	for deadline := time.Now().Add(10 * time.Second); n.seq.Stats.RingEvents.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("nothing in the window")
		}
	}
	if b := n.seq.Stats.RingBytes.Load(); b > windowBytes || b <= 0 {
		t.Fatalf("the window holds %d bytes, bound %d", b, windowBytes)
	}
	if e := n.seq.Stats.RingEvents.Load(); uint64(e) >= n.seq.Last() {
		t.Fatalf("the window holds %d events of %d: the byte bound dropped none", e, n.seq.Last())
	}
	// Back to a window of the usual size before the follower reads on: it then returns to
	// the window as soon as it reaches what the small one kept (a small one could also drop
	// events, holds expiring, before a follower on a loaded machine reads them).
	events.SetRingLimits(n.seq, events.RingEventsMax, events.RingBytesMax)
	reads := n.seq.Stats.StoreReads.Load()
	close(hold) // the follower, stuck on its first batch, reads on: behind the window
	last := n.seq.Last()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		f.mu.Lock()
		next := f.next
		f.mu.Unlock()
		if next > last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower is at %d of %d", next-1, last)
		}
	}
	if n.seq.Stats.StoreReads.Load() == reads {
		t.Fatal("the follower never read the store: it did not fall out of the window")
	}
	// Caught up, it reads new events from the window again.
	reads = n.seq.Stats.StoreReads.Load()
	workload(t, n.l, rand.New(rand.NewPCG(25, 26)), 100000, 10)
	last = n.seq.Last()
	live := f.stopAt(t, last)
	if got := n.seq.Stats.StoreReads.Load() - reads; got != 0 {
		t.Fatalf("caught up, the follower read %d batches from the store", got)
	}
	if want := storedWire(t, n.seq, last); !bytes.Equal(live, want) {
		t.Fatalf("%d events: the follower's bytes (%d) differ from the per-follower encoding's (%d)", last, len(live), len(want))
	}
}
