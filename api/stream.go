package api

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// Limits of CreateTransfersStream (units last).
const (
	// StreamRequestsInFlightMax is how many requests of one stream may wait for their
	// answers: past it the server reads no more of the stream until answers have gone out
	// (HTTP/2 flow control then holds the caller).
	StreamRequestsInFlightMax = 4096
	// StreamBatchesInFlightMax is how many gathered batches the streams have at the ledger at
	// once; requests that arrive meanwhile wait and go in the next batches.
	StreamBatchesInFlightMax = 4
	// StreamQueuedTransfersMax bounds the transfers all streams have waiting for a batch:
	// past it a stream's reader waits for room (one request larger than the room goes
	// alone when the queue is empty).
	StreamQueuedTransfersMax = 4 * ledger.BatchEventsMax
	// StreamAnswersPerResponseMax is the most answers one response carries.
	StreamAnswersPerResponseMax = 1024
)

// streamItem is one request of a stream on its way through a gathered batch.
type streamItem struct {
	answer ledgerv1.CreateTransfersStreamAnswer
	ts     []ledger.Transfer
	out    chan<- *ledgerv1.CreateTransfersStreamAnswer
}

// gatherer puts the requests of every stream into batches of up to ledger.BatchEventsMax
// transfers, at most StreamBatchesInFlightMax at the ledger at once: a request that finds a
// batch slot free goes at once, and the others wait for one, so batches grow with the load
// (as the Go client's automatic batching does for one process). It keeps no goroutine of its
// own: a batch's goroutine takes the next batch while requests wait, and ends when none do.
type gatherer struct {
	s       *Service
	mu      sync.Mutex
	queue   []*streamItem
	queued  int           // transfers in queue
	running int           // batches at the ledger
	room    chan struct{} // closed when the queue shrinks (nil: nobody waits)
}

// submit queues it for a batch, waiting while the queue is full; ctx's error if it ends first.
func (g *gatherer) submit(ctx context.Context, it *streamItem) error {
	g.mu.Lock()
	for g.queued > 0 && g.queued+len(it.ts) > StreamQueuedTransfersMax {
		if g.room == nil {
			g.room = make(chan struct{})
		}
		room := g.room
		g.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.queue = append(g.queue, it)
	g.queued += len(it.ts)
	if g.running == StreamBatchesInFlightMax {
		g.mu.Unlock()
		return nil
	}
	g.running++
	batch := g.take()
	g.mu.Unlock()
	go g.run(batch)
	return nil
}

// take removes the next batch from the queue: its first request, and those after it while
// the batch holds at most ledger.BatchEventsMax transfers. A request that ends inside a linked
// chain ends its batch, so that the chain stays open (and fails as in a CreateTransfers call)
// instead of running on into the next request. The caller holds mu.
func (g *gatherer) take() []*streamItem {
	n, k := len(g.queue[0].ts), 1
	for k < len(g.queue) && !endsOpen(g.queue[k-1].ts) && n+len(g.queue[k].ts) <= ledger.BatchEventsMax {
		n += len(g.queue[k].ts)
		k++
	}
	batch := make([]*streamItem, k)
	copy(batch, g.queue)
	clear(g.queue[:k])
	g.queue = g.queue[k:]
	if len(g.queue) == 0 {
		g.queue = g.queue[:0:0] // let the backing array go once drained
	}
	g.queued -= n
	if g.room != nil {
		close(g.room)
		g.room = nil
	}
	return batch
}

// run sends batches to the ledger until the queue is empty.
func (g *gatherer) run(batch []*streamItem) {
	for {
		g.s.runBatch(batch)
		g.mu.Lock()
		if len(g.queue) == 0 {
			g.running--
			g.mu.Unlock()
			return
		}
		batch = g.take()
		g.mu.Unlock()
	}
}

// runBatch runs the gathered requests' transfers as one CreateTransfers and answers each
// request on its stream (never blocking: each stream has room for every answer it awaits).
func (s *Service) runBatch(batch []*streamItem) {
	n := 0
	for _, it := range batch {
		n += len(it.ts)
	}
	ts := make([]ledger.Transfer, 0, n)
	for _, it := range batch {
		ts = append(ts, it.ts...)
	}
	results, err := s.ledger.CreateTransfers(ts)
	at := 0
	for _, it := range batch {
		a := &it.answer
		if err != nil {
			a.Code, a.Message = uint32(codeOf(err)), err.Error()
		} else {
			for i, r := range results[at : at+len(it.ts)] {
				s.metrics.countTransfer(r)
				if r != ledger.ResultOK {
					a.Results = append(a.Results, &ledgerv1.CreateTransfersResult{Index: uint32(i),
						Result: ledgerv1.CreateTransferResult(r)})
				}
			}
		}
		at += len(it.ts)
		it.out <- a
	}
	s.metrics.countStream(batch, err)
}

// CreateTransfersStream implements LedgerService: a reader goroutine takes the stream's
// requests into the gatherer (at most StreamRequestsInFlightMax unanswered), and this one
// sends the answers, as many to a response as are ready.
func (s *Service) CreateTransfersStream(stream grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]) error {
	ctx := stream.Context()
	s.metrics.streamOpened()
	defer s.metrics.streamClosed()
	out := make(chan *ledgerv1.CreateTransfersStreamAnswer, StreamRequestsInFlightMax)
	slots := make(chan struct{}, StreamRequestsInFlightMax)
	read := make(chan error, 1)
	go func() { read <- s.readStream(ctx, stream, out, slots) }()
	answers := make([]*ledgerv1.CreateTransfersStreamAnswer, 0, StreamAnswersPerResponseMax)
	send := func(a *ledgerv1.CreateTransfersStreamAnswer) error {
		answers = append(answers[:0], a)
		for len(answers) < StreamAnswersPerResponseMax {
			select {
			case a := <-out:
				answers = append(answers, a)
				continue
			default:
			}
			break
		}
		err := stream.Send(&ledgerv1.CreateTransfersStreamResponse{Answers: answers})
		for range answers {
			<-slots
		}
		return err
	}
	reading := true
	for reading || len(slots) > 0 {
		select {
		case a := <-out:
			if err := send(a); err != nil {
				return err
			}
		case err := <-read:
			if err != nil {
				return err
			}
			reading = false // the caller closed its side: answer what is left, then end
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	return nil
}

// readStream takes the stream's requests until the caller closes its side (nil) or the
// stream fails. Each request holds a slot until its answer is sent.
func (s *Service) readStream(ctx context.Context, stream grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse],
	out chan<- *ledgerv1.CreateTransfersStreamAnswer, slots chan struct{}) error {
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
		var req streamRequest // serverCodec decodes it (stream_wire.go)
		if err := stream.RecvMsg(&req); err != nil {
			<-slots
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := checkTransfers(req.ts); err != nil {
			s.metrics.countStreamRefused(err)
			out <- &ledgerv1.CreateTransfersStreamAnswer{Tag: req.tag, Code: uint32(codeOf(err)), Message: err.Error()}
			continue
		}
		it := &streamItem{answer: ledgerv1.CreateTransfersStreamAnswer{Tag: req.tag}, ts: req.ts, out: out}
		if err := s.gather.submit(ctx, it); err != nil {
			<-slots
			return status.FromContextError(err).Err()
		}
	}
}

// endsOpen reports whether ts ends inside a linked chain.
func endsOpen(ts []ledger.Transfer) bool {
	return len(ts) > 0 && ts[len(ts)-1].Flags&ledger.TransferLinked != 0
}

// streamCode is the gRPC code a stream answer carries for err (OK for nil).
func streamCode(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	return codeOf(err)
}
