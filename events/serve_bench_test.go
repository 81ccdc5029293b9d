package events_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
)

// BenchmarkServeFromWindow: what one more gRPC subscriber costs while it keeps up: the
// events of a workload, all in the window, handed as the wire's bytes (the transport not
// included), per event.
func BenchmarkServeFromWindow(b *testing.B) {
	n, last := windowNode(b)
	defer n.stop(b)
	var scratch api.EncodeScratch
	encode := func(dst []byte, batch []events.Event) []byte { return api.EncodeEvents(dst, batch, &scratch) }
	done := errors.New("done")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		size := 0
		err := n.seq.FollowWire(context.Background(), 1, events.FollowOptions{Coalesce: true}, encode, func(w events.WireBatch) error {
			for _, p := range w.Parts {
				size += len(p)
			}
			if w.First+uint64(w.Events) > last {
				return done
			}
			return nil
		})
		if !errors.Is(err, done) || size == 0 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(uint64(b.N)*last), "ns/event")
}

// windowNode is a node whose window holds a workload's events (a follower attached while
// they were committed), and the last sequence.
func windowNode(b *testing.B) (*node, uint64) {
	t := b
	n := startNode(t, vfs.NewMem(), 0)
	openAccounts(t, n.l)
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		_ = n.seq.Follow(ctx, 1, events.FollowOptions{}, func([]events.Event) error { return nil })
	}()
	for !n.seq.Capturing() {
		time.Sleep(time.Millisecond)
	}
	workload(t, n.l, rand.New(rand.NewPCG(31, 32)), 1000, 100)
	time.Sleep(1200 * time.Millisecond) // holds expire
	cancel()
	<-stopped
	if n.seq.Last() < 10000 {
		b.Fatalf("workload: %d events", n.seq.Last())
	}
	return n, n.seq.Last()
}
