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
}

type txStream struct {
	mu   sync.Mutex // Send is not safe for concurrent use
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
		go p.receive(st)
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
func (p *streamPool) receive(st *txStream) {
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
		for _, a := range resp.GetAnswers() {
			r := streamReply{failed: len(a.GetResults())}
			if a.GetCode() != 0 {
				r.err = status.Error(codes.Code(a.GetCode()), a.GetMessage())
			}
			if tag := a.GetTag(); tag < uint64(len(p.replies)) {
				p.replies[tag] <- r
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
