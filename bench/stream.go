package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/client"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// StreamsMax bounds --streams.
const StreamsMax = 256

// streamPool sends the workers' requests on CreateTransfersStream streams, one connection
// each, as a gRPC caller in any language can (no Go client): worker i sends on stream
// i mod len(streams), tagged i, and waits for the answer that names its tag (a worker has
// one request out at a time, so tags are unique while they matter).
type streamPool struct {
	conns   []*grpc.ClientConn
	streams []*txStream
	replies []chan streamReply // by worker
	cancel  context.CancelFunc
	recv    sync.WaitGroup
	answers atomic.Int64
	// callers, while runCallers runs, takes the answers in place of replies, by stream.
	callers atomic.Pointer[[]*streamCallers]
}

type txStream struct {
	mu   sync.Mutex // Send is not safe for concurrent use (runCallers' sender, the stream's only one while it runs, takes none)
	s    grpc.BidiStreamingClient[ledgerv1.CreateTransfersStreamRequest, ledgerv1.CreateTransfersStreamResponse]
	dead chan struct{} // closed when the stream fails; err says why
	err  error
}

type streamReply struct {
	failed int
	err    error
}

// dialStreams opens n streams to addr for workers callers.
func dialStreams(addr string, sec client.Security, n, workers int) (*streamPool, error) {
	opts, err := sec.DialOptions()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &streamPool{replies: make([]chan streamReply, workers), cancel: cancel}
	for i := range p.replies {
		p.replies[i] = make(chan streamReply, 1)
	}
	for range n {
		conn, err := grpc.NewClient(addr, append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))...)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: dial %s: %w", addr, err), p.close())
		}
		p.conns = append(p.conns, conn)
		s, err := ledgerv1.NewLedgerServiceClient(conn).CreateTransfersStream(ctx, grpc.ForceCodecV2(streamCodec))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("bench: open a transfer stream: %w", err), p.close())
		}
		st := &txStream{s: s, dead: make(chan struct{})}
		p.streams = append(p.streams, st)
		p.recv.Add(1)
		go p.receive(st, len(p.streams)-1)
	}
	return p, nil
}

// streamCodec is gRPC's proto codec, except that it encodes a CreateTransfersStreamRequest by
// hand (client.AppendCreateTransfersStreamRequest, byte for byte proto.Marshal's): with one
// transfer per request, proto.Marshal was some 15% of the load generator's CPU, which shares
// the cores with the ledger it measures. Its name is the proto codec's, so the content type is
// application/grpc+proto.
var streamCodec = requestCodec{proto: encoding.GetCodecV2(protoenc.Name)}

type requestCodec struct{ proto encoding.CodecV2 }

func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	if m, ok := v.(*ledgerv1.CreateTransfersStreamRequest); ok && len(m.ProtoReflect().GetUnknown()) == 0 {
		if b, ok := client.AppendCreateTransfersStreamRequest(nil, m.GetTag(), m.GetTransfers()); ok {
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	return c.proto.Marshal(v)
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c requestCodec) Name() string { return c.proto.Name() }

// receive hands each answer to the worker its tag names, until the stream ends.
func (p *streamPool) receive(st *txStream, j int) {
	defer p.recv.Done()
	for {
		resp, err := st.s.Recv()
		if errors.Is(err, io.EOF) {
			err = errors.New("ended by the server")
		}
		if err != nil {
			st.err = fmt.Errorf("bench: transfer stream: %w", err)
			close(st.dead)
			return
		}
		p.answers.Add(int64(len(resp.GetAnswers())))
		var sc *streamCallers
		if cs := p.callers.Load(); cs != nil {
			sc = (*cs)[j]
		}
		for _, a := range resp.GetAnswers() {
			r := streamReply{failed: len(a.GetResults())}
			if a.GetCode() != 0 {
				r.err = status.Error(codes.Code(a.GetCode()), a.GetMessage())
			}
			switch tag := a.GetTag(); {
			case tag >= uint64(len(p.replies)): // no caller's tag: dropped
			case sc != nil:
				sc.answer(int(tag), r)
			default:
				select {
				case p.replies[tag] <- r:
				default: // a second answer to one request (a server's bug): dropped, not waited on
				}
			}
		}
	}
}

// create sends worker's request and waits for its answer: how many of ts failed.
func (p *streamPool) create(ctx context.Context, worker int, req *ledgerv1.CreateTransfersStreamRequest) (int, error) {
	st := p.streams[worker%len(p.streams)]
	req.Tag = uint64(worker)
	st.mu.Lock()
	err := st.s.Send(req)
	st.mu.Unlock()
	if err != nil {
		<-st.dead // Send fails once the stream has: Recv says why
		return 0, st.err
	}
	select {
	case r := <-p.replies[worker]:
		return r.failed, r.err
	case <-st.dead:
		return 0, st.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// streamCloseWait is how long close waits for the server to end the streams it half-closed.
const streamCloseWait = 10 * time.Second

// close half-closes the streams, lets the server end them (every worker has its answer by
// then), cancels any left after streamCloseWait, and closes the connections.
func (p *streamPool) close() error {
	var errs []error
	for _, st := range p.streams {
		st.mu.Lock()
		errs = append(errs, st.s.CloseSend())
		st.mu.Unlock()
	}
	ended := make(chan struct{})
	go func() { p.recv.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(streamCloseWait):
	}
	p.cancel()
	<-ended
	for _, c := range p.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// runCallers runs the workers as the run's callers on the streams without a goroutine each (a
// worker's goroutine cost the load generator three hand-offs a request, on the cores it shares
// with the ledger it measures): worker i is a caller on stream i mod len(streams), tagged i,
// with one request out at a time as before. Each stream's sender (here, a goroutine per
// stream) makes and sends the next request of each caller whose answer came; its receiver
// (receive) records each answer and hands the caller back. It returns once every caller is
// done: no transfers left, the run's context done, or the stream failed (the requests out
// then count as failed, and each later one fails at once).
func (p *streamPool) runCallers(ctx context.Context, r *runner, workers []*worker) {
	scs := make([]*streamCallers, len(p.streams))
	for j, st := range p.streams {
		scs[j] = &streamCallers{st: st, workers: workers, wake: make(chan struct{}, 1), out: map[int]int64{}}
	}
	for i := range workers {
		scs[i%len(scs)].ready = append(scs[i%len(scs)].ready, i)
	}
	p.callers.Store(&scs)
	defer p.callers.Store(nil)
	var wg sync.WaitGroup
	for _, sc := range scs {
		wg.Go(func() { sc.send(ctx, r) })
	}
	wg.Wait()
}

// streamCallers are one stream's callers: its sender takes the ready ones, its receiver
// makes them ready again.
type streamCallers struct {
	st      *txStream
	workers []*worker     // all of the run's, by tag
	wake    chan struct{} // one place: ready grew
	mu      sync.Mutex
	ready   []int         // callers whose next request is due
	out     map[int]int64 // callers with a request out: when the sender took it up (Unix ns)
}

// send is the stream's sender: it sends each ready caller's next request until every caller
// is done.
func (sc *streamCallers) send(ctx context.Context, r *runner) {
	c := r.cfg
	sc.mu.Lock()
	live := len(sc.ready) // callers not done
	sc.mu.Unlock()
	var batch []int
	for live > 0 {
		sc.mu.Lock()
		batch, sc.ready = sc.ready, batch[:0]
		sc.mu.Unlock()
		// A request's latency counts from here, when the sender took its caller up: the
		// making and sending of the requests before it in the batch are the caller's wait,
		// as a goroutine per caller waited for the stream's Send.
		took := time.Now().UnixNano()
		if len(batch) == 0 {
			select {
			case <-sc.wake:
			case <-sc.st.dead:
				sc.failOut(sc.st.err)
			case <-ctx.Done():
				sc.failOut(ctx.Err()) // a late answer finds its caller no longer out
			}
			continue
		}
		for _, k := range batch {
			w := sc.workers[k]
			first, n := int64(0), int64(0)
			if ctx.Err() == nil {
				first, n = r.take(int64(c.Batch))
			}
			if n == 0 {
				live--
				continue
			}
			w.used = 0
			w.streamReq.Transfers = w.transfers(first, int(n), w.batch[:0])
			w.streamReq.Tag = uint64(k)
			// The caller's request and its clock are the receiver's once out (under mu).
			sc.mu.Lock()
			sc.out[k] = took
			sc.mu.Unlock()
			if err := sc.st.s.Send(&w.streamReq); err != nil {
				<-sc.st.dead // Send fails once the stream has: its receiver has ended
				sc.failOut(sc.st.err)
			}
		}
	}
}

// answer records caller k's answer (the stream's receiver calls it) and makes it ready.
func (sc *streamCallers) answer(k int, rep streamReply) {
	now := time.Now().UnixNano()
	sc.mu.Lock()
	sent, ok := sc.out[k]
	if ok {
		delete(sc.out, k)
		w := sc.workers[k]
		if ts := w.streamReq.Transfers; w.recorded(len(ts), (now-sent)/1e3, rep.failed, rep.err) {
			w.posted(ts)
		}
		sc.ready = append(sc.ready, k)
	}
	sc.mu.Unlock()
	if ok {
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

// failOut counts the requests out as failed with err and makes their callers ready: once the
// stream has failed (its receiver has ended: no answer will come; each next request fails at
// once), or the run's context is done (none is sent after).
func (sc *streamCallers) failOut(err error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for k := range sc.out {
		w := sc.workers[k]
		w.recorded(len(w.streamReq.Transfers), 0, 0, err)
		sc.ready = append(sc.ready, k)
	}
	clear(sc.out)
}
