package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/events"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// follower follows the event stream during a run (--subscribe) and samples its lag: does the
// stream keep up with the writes?
type follower struct {
	last    func() (uint64, error) // the stream's last sequence
	cancel  context.CancelFunc
	done    chan error
	seen    atomic.Uint64 // the last sequence received
	maxLag  atomic.Uint64
	after   uint64 // the sequence the follower started after
	started time.Time
	every   time.Duration // how often the lag is sampled
}

// How often a follower samples its lag: in process, reading the sequencer's head is free; a
// remote ledgerd's head is scraped from its metrics, which costs ledgerd a few milliseconds of
// CPU a scrape (at 10 a second, about 1.5% of its CPU at the bench's peak, charged to the
// stream it measures).
const (
	lagSampleEmbedded = 100 * time.Millisecond
	lagSampleRemote   = time.Second
)

// followerCatchUpMax bounds how long the end of a run waits for the follower.
const followerCatchUpMax = 2 * time.Minute

func newFollower(last func() (uint64, error), after uint64, every time.Duration) (*follower, context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{last: last, cancel: cancel, done: make(chan error, 1), after: after, started: time.Now(), every: every}
	f.seen.Store(after)
	go f.sample(ctx)
	return f, ctx
}

// sequencerLast is an embedded stream's last sequence.
func sequencerLast(seq *events.Sequencer) func() (uint64, error) {
	return func() (uint64, error) { return seq.Last(), nil }
}

// scrapedLast is a remote ledgerd's last sequence, from its metrics.
func scrapedLast(metricsAddr string) func() (uint64, error) {
	return func() (uint64, error) {
		last, found := uint64(0), false
		err := scrapeMetrics(metricsAddr, func(name string, v float64) {
			if name == "ledger_events_last_sequence" {
				last, found = uint64(v), true
			}
		})
		if err == nil && !found {
			err = fmt.Errorf("bench: %s has no ledger_events_last_sequence", metricsAddr)
		}
		return last, err
	}
}

// followGRPC follows over gRPC from the sequence after after, as a downstream consumer would,
// sampling its lag every so often.
func followGRPC(addr string, sec client.Security, after uint64, last func() (uint64, error),
	every time.Duration) (*follower, error) {
	opts, err := sec.DialOptions()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	f, ctx := newFollower(last, after, every)
	desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, ledgerv1.LedgerService_Subscribe_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
	if err == nil {
		err = stream.SendMsg(&ledgerv1.SubscribeRequest{FromSequence: after})
	}
	if err == nil {
		err = stream.CloseSend()
	}
	if err != nil {
		_ = conn.Close()
		f.cancel()
		return nil, err
	}
	go func() {
		defer conn.Close()
		var msg scanned
		for {
			if err := stream.RecvMsg(&msg); err != nil {
				f.done <- err
				return
			}
			if msg.n == 0 {
				continue
			}
			if msg.first != f.seen.Load()+1 {
				f.done <- fmt.Errorf("bench: event %d after %d", msg.first, f.seen.Load())
				return
			}
			f.seen.Store(msg.first + uint64(msg.n) - 1)
		}
	}()
	return f, nil
}

// followDirect follows in process (with --in-process).
func followDirect(seq *events.Sequencer) *follower {
	f, ctx := newFollower(sequencerLast(seq), 0, lagSampleEmbedded)
	go func() {
		f.done <- seq.Follow(ctx, 1, events.FollowOptions{Coalesce: true}, func(batch []events.Event) error {
			f.seen.Store(batch[len(batch)-1].Seq)
			return nil
		})
	}()
	return f
}

func (f *follower) sample(ctx context.Context) {
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			last, err := f.last()
			if seen := f.seen.Load(); err == nil && last > seen && last-seen > f.maxLag.Load() {
				f.maxLag.Store(last - seen)
			}
		case <-ctx.Done():
			return
		}
	}
}

// finish waits for the follower to reach the stream's end, reports, and stops it.
func (f *follower) finish() error {
	end := time.Now()
	last, err := f.last()
	if err != nil {
		f.cancel()
		return err
	}
	for f.seen.Load() < last && time.Since(end) < followerCatchUpMax {
		select {
		case err := <-f.done:
			f.cancel()
			return fmt.Errorf("bench: the follower stopped at %d of %d: %w", f.seen.Load(), last, err)
		case <-time.After(time.Millisecond):
		}
	}
	behind := time.Since(end)
	f.cancel()
	err = <-f.done
	if errors.Is(err, context.Canceled) || errors.Is(err, events.ErrStopped) || isCanceled(err) {
		err = nil
	}
	fmt.Fprintf(os.Stderr, "event stream: %d events followed, largest lag %d events (sampled every %v), caught up %v after the run\n",
		f.seen.Load()-f.after, f.maxLag.Load(), f.every, behind.Round(time.Millisecond))
	if f.seen.Load() < last {
		return fmt.Errorf("bench: the follower did not catch up (%d of %d)", f.seen.Load(), last)
	}
	return err
}

func isCanceled(err error) bool { return status.Code(err) == codes.Canceled }
