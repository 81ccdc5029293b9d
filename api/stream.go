package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// Limits of CreateTransfersStream (units last).
const (
	// StreamsOpenMax is how many transfer streams may be open at once; one more is refused
	// RESOURCE_EXHAUSTED.
	StreamsOpenMax = 256
	// StreamRequestsInFlightMax is how many requests of one stream may wait for their
	// answers, and StreamTransfersInFlightMax how many transfers they may hold (a request
	// alone is always taken): past either the server reads no more of the stream until
	// answers have gone out (HTTP/2 flow control then holds the caller). Together they bound
	// what one stream holds, answers not yet read included.
	StreamRequestsInFlightMax  = 4096
	StreamTransfersInFlightMax = 4 * ledger.BatchEventsMax
	// StreamBatchesInFlightMax is how many gathered batches the streams have at the ledger at
	// once; requests that arrive meanwhile wait and go in the next batches.
	StreamBatchesInFlightMax = 4
	// StreamQueuedTransfersMax bounds the transfers all streams have waiting for a batch:
	// past it the streams' readers wait for room.
	StreamQueuedTransfersMax = 4 * ledger.BatchEventsMax
	// StreamAnswersPerResponseMax and StreamResultsPerResponseMax bound one response: at most
	// that many answers, and no answer added once the results listed reach the second (a
	// response stays far below a client's default 4 MiB receive limit).
	StreamAnswersPerResponseMax = 1024
	StreamResultsPerResponseMax = ledger.BatchEventsMax
)

// errStreamStopping: the server is stopping (EndTransferStreams); the stream takes no more.
var errStreamStopping = status.Error(codes.Unavailable,
	"the server is stopping: every request taken was answered; send the rest on a new stream")

// streamItem is one request of a stream on its way through a gathered batch.
type streamItem struct {
	answer ledgerv1.CreateTransfersStreamAnswer
	ts     []ledger.Transfer // dropped once copied into the batch
	n      int               // transfers of the request
	out    chan<- streamAnswer
}

// streamAnswer is an answer and the transfers its request held on its stream.
type streamAnswer struct {
	a *ledgerv1.CreateTransfersStreamAnswer
	n int
}

// gatherer puts the requests of every stream into batches of up to ledger.BatchEventsMax
// transfers, at most StreamBatchesInFlightMax at the ledger at once: a request that finds a
// batch slot free goes at once, and the others wait for one, so batches grow with the load
// (as the Go client's automatic batching does for one process). It keeps no goroutine of its
// own: a batch's goroutine takes the next batch while requests wait, and ends when none do.
type gatherer struct {
	s        *Service
	mu       sync.Mutex
	queue    []*streamItem
	queued   int    // transfers in queue
	atLedger int    // transfers in batches at the ledger
	running  int    // batches at the ledger
	room     wakeup // the queue shrank
}

// wakeup lets goroutines wait, holding no lock, for a change another makes under a mutex
// they share: a waiter takes wait() under the mutex, lets it go and waits for the channel to
// close; wake(), under the mutex, closes it for every waiter.
type wakeup struct{ ch chan struct{} }

func (w *wakeup) wait() <-chan struct{} {
	if w.ch == nil {
		w.ch = make(chan struct{})
	}
	return w.ch
}

func (w *wakeup) wake() {
	if w.ch != nil {
		close(w.ch)
		w.ch = nil
	}
}

// submit queues it for a batch, waiting while the queue is full; ctx's error if it ends first.
func (g *gatherer) submit(ctx context.Context, it *streamItem) error {
	g.mu.Lock()
	for g.queued > 0 && g.queued+it.n > StreamQueuedTransfersMax {
		room := g.room.wait()
		g.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
		g.mu.Lock()
	}
	g.queue = append(g.queue, it)
	g.queued += it.n
	if g.queued > StreamQueuedTransfersMax && len(g.queue) > 1 {
		panic(fmt.Sprintf("api: INVARIANT: %d transfers queued for the streams' batches, past %d", g.queued, StreamQueuedTransfersMax))
	}
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
	n, k := g.queue[0].n, 1
	for k < len(g.queue) && !endsOpen(g.queue[k-1].ts) && n+g.queue[k].n <= ledger.BatchEventsMax {
		n += g.queue[k].n
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
	g.atLedger += n
	g.room.wake()
	return batch
}

// busy is how many transfers the gatherer holds: queued, or in batches at the ledger
// (tests).
func (g *gatherer) busy() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.queued + g.atLedger
}

// run sends batches to the ledger until the queue is empty.
func (g *gatherer) run(batch []*streamItem) {
	for {
		g.s.runBatch(batch)
		g.mu.Lock()
		for _, it := range batch {
			g.atLedger -= it.n
		}
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
// A panic (a bug) answers the requests not answered yet INTERNAL, their outcome unknown,
// logged and counted as a handler's panic is; the server goes on.
func (s *Service) runBatch(batch []*streamItem) {
	answered := 0
	defer func() {
		if p := recover(); p != nil {
			slog.Error("api: a transfer stream's batch panicked (a bug); its requests answered INTERNAL",
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			s.metrics.countPanic(ledgerv1.LedgerService_CreateTransfersStream_FullMethodName)
			for _, it := range batch[answered:] {
				it.answer.Results = nil
				it.answer.Code, it.answer.Message = uint32(codes.Internal), "internal error (logged): the outcome of these transfers is unknown; look them up or send them again"
				it.out <- streamAnswer{a: &it.answer, n: it.n}
			}
		}
	}()
	n := 0
	for _, it := range batch {
		n += it.n
	}
	ts := make([]ledger.Transfer, 0, n)
	for _, it := range batch {
		ts = append(ts, it.ts...)
		it.ts = nil // the batch has them: an answer waiting to be sent holds none
	}
	results, err := s.ledger.CreateTransfers(ts)
	s.metrics.countStream(len(batch), err)
	at := 0
	for _, it := range batch {
		a := &it.answer
		if err != nil {
			a.Code, a.Message = uint32(codeOf(err)), err.Error()
		} else {
			for i, r := range results[at : at+it.n] {
				s.metrics.countTransfer(r)
				if r != ledger.ResultOK {
					a.Results = append(a.Results, &ledgerv1.CreateTransfersResult{Index: uint32(i),
						Result: ledgerv1.CreateTransferResult(r)})
				}
			}
		}
		at += it.n
		answered++
		it.out <- streamAnswer{a: a, n: it.n}
	}
}

// transferStream is one open CreateTransfersStream: its reader goroutine takes requests (at
// most StreamRequestsInFlightMax and StreamTransfersInFlightMax unanswered) into the
// gatherer, and the handler's goroutine sends their answers.
type transferStream struct {
	s      *Service
	ctx    context.Context
	stream grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]
	out    chan streamAnswer // room for every unanswered request: never full

	mu        sync.Mutex
	requests  int    // taken and not answered
	transfers int    // of those requests
	stopping  bool   // the server is stopping: take no more
	room      wakeup // an answer went out
}

// CreateTransfersStream implements LedgerService.
func (s *Service) CreateTransfersStream(stream grpc.BidiStreamingServer[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]) error {
	select {
	case <-s.streamsEnd:
		return errStreamStopping
	default:
	}
	if s.streams.Add(1) > StreamsOpenMax {
		s.streams.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "%d transfer streams open, the most the server takes", StreamsOpenMax)
	}
	defer s.streams.Add(-1)
	s.metrics.streamOpened()
	defer s.metrics.streamClosed()
	t := &transferStream{s: s, ctx: stream.Context(), stream: stream, out: make(chan streamAnswer, StreamRequestsInFlightMax)}
	read := make(chan error, 1)
	go func() { read <- t.readAll() }()
	reading, stop := true, s.streamsEnd
	var end error // how the reader ended: nil (the caller closed its side) or errStreamStopping
	for {
		select {
		case a := <-t.out:
			if err := t.send(a); err != nil {
				return err
			}
		case err := <-read:
			reading = false // the caller closed its side (or the server stops): answer what is left
			if err != nil && !errors.Is(err, errStreamStopping) {
				return err
			}
			end = err
		case <-stop:
			stop = nil
			t.mu.Lock()
			t.stopping = true
			t.room.wake()
			t.mu.Unlock()
		case <-t.ctx.Done():
			return status.FromContextError(t.ctx.Err()).Err()
		}
		if !reading || stop == nil {
			t.mu.Lock()
			done := t.requests == 0
			t.mu.Unlock()
			if done && !reading {
				return end // UNAVAILABLE when the reader left a request it read unrun
			}
			if done && stop == nil {
				return errStreamStopping // the reader may wait in Recv: the stream's end ends it
			}
		}
	}
}

// send sends a and the other answers ready, up to a response's bounds, and gives back what
// their requests held.
func (t *transferStream) send(a streamAnswer) error {
	answers := []*ledgerv1.CreateTransfersStreamAnswer{a.a}
	n, results := a.n, len(a.a.Results)
	for len(answers) < StreamAnswersPerResponseMax && results < StreamResultsPerResponseMax {
		select {
		case a := <-t.out:
			answers = append(answers, a.a)
			n += a.n
			results += len(a.a.Results)
			continue
		default:
		}
		break
	}
	// A new response each time: the transport may read it after Send returns.
	err := t.stream.Send(&ledgerv1.CreateTransfersStreamResponse{Answers: answers})
	t.mu.Lock()
	t.requests -= len(answers)
	t.transfers -= n
	t.room.wake()
	t.mu.Unlock()
	return err
}

// takeRoom waits until the stream may hold one more request of n transfers (one request
// alone always may) and counts it in; false if the server stops or the stream ends first.
func (t *transferStream) takeRoom(n int) bool {
	t.mu.Lock()
	for !t.stopping && t.requests > 0 &&
		(t.requests >= StreamRequestsInFlightMax || t.transfers+n > StreamTransfersInFlightMax) {
		room := t.room.wait()
		t.mu.Unlock()
		select {
		case <-room:
		case <-t.ctx.Done():
			return false
		}
		t.mu.Lock()
	}
	ok := !t.stopping
	if ok {
		t.requests++
		t.transfers += n
	}
	t.mu.Unlock()
	return ok
}

// readAll takes the stream's requests until the caller closes its side (nil), the server
// stops (errStreamStopping: a request read then is left unrun and unanswered, as one still
// on the wire) or the stream fails. A panic (a bug, no input should cause one) ends the
// stream INTERNAL, logged and counted, instead of the process.
func (t *transferStream) readAll() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = t.s.metrics.recovered(t.ctx, p)
		}
	}()
	for {
		var req streamRequest // serverCodec decodes it (stream_wire.go)
		if err := t.stream.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if t.ctx.Err() != nil {
			return status.FromContextError(t.ctx.Err()).Err()
		}
		// A refused request holds no transfers while it waits for room to be answered.
		err := req.err
		if err == nil {
			err = checkTransfers(req.n, req.ts)
		}
		n := len(req.ts)
		if err != nil {
			n, req.ts = 0, nil
		}
		if !t.takeRoom(n) {
			if t.ctx.Err() != nil {
				return status.FromContextError(t.ctx.Err()).Err()
			}
			return errStreamStopping
		}
		if err != nil {
			t.s.metrics.countStreamRefused(err)
			t.out <- streamAnswer{a: &ledgerv1.CreateTransfersStreamAnswer{Tag: req.tag, Code: uint32(codeOf(err)), Message: err.Error()}}
			continue
		}
		it := &streamItem{answer: ledgerv1.CreateTransfersStreamAnswer{Tag: req.tag}, ts: req.ts, n: n, out: t.out}
		if err := t.s.gather.submit(t.ctx, it); err != nil {
			return status.FromContextError(err).Err()
		}
	}
}

// EndTransferStreams ends every transfer stream (and refuses new ones) for a graceful stop:
// each reads no more requests, answers those it took, then ends UNAVAILABLE; the caller
// sends what it had not yet sent on a new stream (after the restart). Safe to call twice.
func (s *Service) EndTransferStreams() { s.endStreams.Do(func() { close(s.streamsEnd) }) }

// endsOpen reports whether ts ends inside a linked chain.
func endsOpen(ts []ledger.Transfer) bool {
	return len(ts) > 0 && ts[len(ts)-1].Flags&ledger.TransferLinked != 0
}
