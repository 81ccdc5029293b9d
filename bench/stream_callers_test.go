package bench

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/client"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// streamServer answers the first `answer` requests of all its streams (each created, none
// failed), then either ends every stream with an error (end) or answers nothing more.
type streamServer struct {
	ledgerv1.UnimplementedLedgerServiceServer
	answer int64
	end    bool
	seen   atomic.Int64
}

func (s *streamServer) CreateTransfersStream(st grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]) error {
	for {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		if s.seen.Add(1) > s.answer {
			if s.end {
				return status.Error(codes.Unavailable, "gone")
			}
			continue
		}
		if err := st.Send(&ledgerv1.CreateTransfersStreamResponse{Answers: []*ledgerv1.CreateTransfersStreamAnswer{{Tag: req.GetTag()}}}); err != nil {
			return err
		}
	}
}

// runStreamCallers runs transfers over the callers of 3 streams to s, with ctx, and answers
// the runner once every caller is done (failing the test if that takes 10 s).
func runStreamCallers(t *testing.T, ctx context.Context, s *streamServer, transfers int) *runner {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	ledgerv1.RegisterLedgerServiceServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	r := &runner{cfg: &Config{Distribution: Uniform, Accounts: 50, Transfers: transfers, Batch: 2, Concurrency: 12, Seed: 7}}
	p, err := dialStreams(lis.Addr().String(), client.Security{}, 3, r.cfg.Concurrency)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.close() }()
	_, workers := r.workers()
	done := make(chan struct{})
	go func() {
		p.runCallers(ctx, r, workers)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the callers did not end")
	}
	return r
}

// Once a stream fails, its requests out count as failed and every later one fails at once:
// every transfer is answered, the answered ones created, the rest failed.
func TestStreamCallersWhenTheStreamsEnd(t *testing.T) {
	s := &streamServer{answer: 20, end: true}
	r := runStreamCallers(t, context.Background(), s, 1000)
	if r.done.Load() != 1000 || r.issued.Load() < 1000 {
		t.Fatalf("%d of 1000 transfers answered, %d issued", r.done.Load(), r.issued.Load())
	}
	if ok := r.done.Load() - r.failed.Load(); ok != 2*20 {
		t.Fatalf("%d transfers created, want the 40 of the 20 requests answered", ok)
	}
	if r.requests.Load() != 500 || r.errs.Load() != 500-20 || r.failed.Load() != 2*(500-20) || r.firstErr.Load() == nil {
		t.Fatalf("%d requests, %d failed (%d transfers), want 500, 480 (960)", r.requests.Load(), r.errs.Load(), r.failed.Load())
	}
}

// An answer that comes after its request was counted failed (failOut), or for a caller with
// no request out, changes nothing.
func TestStreamCallersLateAnswer(t *testing.T) {
	r := &runner{cfg: &Config{Distribution: Uniform, Accounts: 50, Transfers: 10, Batch: 2, Concurrency: 2, Seed: 7}}
	_, workers := r.workers()
	sc := &streamCallers{st: &txStream{dead: make(chan struct{})}, workers: workers, wake: make(chan struct{}, 1),
		out: map[int]int64{}}
	first, n := r.take(2)
	w := workers[0]
	w.streamReq.Transfers = w.transfers(first, int(n), w.batch[:0])
	sc.out[0] = time.Now().UnixNano()
	sc.failOut(context.Canceled)
	sc.answer(0, streamReply{})
	sc.answer(1, streamReply{})
	if r.requests.Load() != 1 || r.done.Load() != 2 || r.failed.Load() != 2 || r.amount.Load() != 0 ||
		len(sc.ready) != 1 || sc.ready[0] != 0 {
		t.Fatalf("requests %d, answered %d, failed %d, posted %d, ready %v; want 1, 2, 2, 0, [0]",
			r.requests.Load(), r.done.Load(), r.failed.Load(), r.amount.Load(), sc.ready)
	}
}

// A run whose context ends stops sending, and counts the requests still out as failed without
// waiting for answers that do not come.
func TestStreamCallersWhenTheRunIsCancelled(t *testing.T) {
	s := &streamServer{answer: 30}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for s.seen.Load() < 30+12 { // every caller has a request the server will not answer
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	r := runStreamCallers(t, ctx, s, 1_000_000)
	if ok := r.done.Load() - r.failed.Load(); ok != 2*30 {
		t.Fatalf("%d transfers created, want the 60 of the 30 requests answered", ok)
	}
	if r.failed.Load() != 2*12 || r.errs.Load() != 12 {
		t.Fatalf("%d transfers and %d requests failed, want the 12 requests out", r.failed.Load(), r.errs.Load())
	}
}
