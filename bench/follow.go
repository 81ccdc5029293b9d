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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/events"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// follower follows the event stream during a run (--subscribe) and samples its lag: does the
// stream keep up with the writes?
type follower struct {
	seq     *events.Sequencer
	cancel  context.CancelFunc
	done    chan error
	seen    atomic.Uint64 // the last sequence received
	maxLag  atomic.Uint64
	started time.Time
}

// followerCatchUpMax bounds how long the end of a run waits for the follower.
const followerCatchUpMax = 2 * time.Minute

func newFollower(seq *events.Sequencer) (*follower, context.Context) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{seq: seq, cancel: cancel, done: make(chan error, 1), started: time.Now()}
	go f.sample(ctx)
	return f, ctx
}

// followGRPC follows over gRPC, as a downstream consumer would.
func followGRPC(addr string, seq *events.Sequencer) (*follower, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	f, ctx := newFollower(seq)
	desc := &grpc.StreamDesc{StreamName: "Subscribe", ServerStreams: true}
	stream, err := conn.NewStream(ctx, desc, ledgerv1.LedgerService_Subscribe_FullMethodName, grpc.ForceCodec(rawCodec{}))
	if err == nil {
		err = stream.SendMsg(&ledgerv1.SubscribeRequest{})
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
		var msg []byte
		for {
			if err := stream.RecvMsg(&msg); err != nil {
				f.done <- err
				return
			}
			first, n, err := scanEvents(msg)
			if err == nil && n > 0 && first != f.seen.Load()+1 {
				err = fmt.Errorf("bench: event %d after %d", first, f.seen.Load())
			}
			if err != nil {
				f.done <- err
				return
			}
			f.seen.Store(first + uint64(n) - 1)
		}
	}()
	return f, nil
}

// followDirect follows in process (with --in-process).
func followDirect(seq *events.Sequencer) *follower {
	f, ctx := newFollower(seq)
	go func() {
		f.done <- seq.Follow(ctx, 1, events.FollowOptions{Coalesce: true}, func(batch []events.Event) error {
			f.seen.Store(batch[len(batch)-1].Seq)
			return nil
		})
	}()
	return f
}

func (f *follower) sample(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if last, seen := f.seq.Last(), f.seen.Load(); last > seen && last-seen > f.maxLag.Load() {
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
	last := f.seq.Last()
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
	err := <-f.done
	if errors.Is(err, context.Canceled) || errors.Is(err, events.ErrStopped) || isCanceled(err) {
		err = nil
	}
	fmt.Fprintf(os.Stderr, "event stream: %d events followed, largest lag %d events (sampled every 100 ms), caught up %v after the run\n",
		f.seen.Load(), f.maxLag.Load(), behind.Round(time.Millisecond))
	if f.seen.Load() < last {
		return fmt.Errorf("bench: the follower did not catch up (%d of %d)", f.seen.Load(), last)
	}
	return err
}

func isCanceled(err error) bool { return status.Code(err) == codes.Canceled }
