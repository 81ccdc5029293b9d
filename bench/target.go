package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/client"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// target is what a run drives: a ledger behind gRPC, or one in this process.
type target interface {
	createAccounts(ctx context.Context, as []*ledgerv1.Account) (failed int, err error)
	// createTransfers returns how many of ts failed.
	createTransfers(ctx context.Context, ts []*ledgerv1.Transfer) (failed int, err error)
	lookupAccounts(ctx context.Context, ids []uint64) ([]*ledgerv1.Account, error)
	close() error
}

// batcher is a target that can send single transfers through the client's auto-batching.
type batcher interface {
	createTransfer(ctx context.Context, t *ledgerv1.Transfer) (ok bool, err error)
}

func (g grpcTarget) createTransfer(ctx context.Context, t *ledgerv1.Transfer) (bool, error) {
	r, err := g.c.CreateTransfer(ctx, t)
	return r == ledgerv1.CreateTransferResult_CREATE_TRANSFER_RESULT_OK, err
}

type grpcTarget struct {
	c       *client.Client
	streams *streamPool // --streams
}

// transferStreams is the target's transfer streams (nil without --streams); a remote target
// has them through its embedded grpcTarget.
func (g grpcTarget) transferStreams() *streamPool { return g.streams }

// dialStreams opens c.Streams transfer streams to addr when asked.
func (g *grpcTarget) dialStreams(c *Config, addr string, sec client.Security) error {
	if c.Streams == 0 {
		return nil
	}
	var err error
	g.streams, err = dialStreams(addr, sec, c.Streams, c.Concurrency)
	return err
}

func (g grpcTarget) createAccounts(ctx context.Context, as []*ledgerv1.Account) (int, error) {
	f, err := g.c.CreateAccounts(ctx, as)
	return len(f), err
}

func (g grpcTarget) createTransfers(ctx context.Context, ts []*ledgerv1.Transfer) (int, error) {
	f, err := g.c.CreateTransfers(ctx, ts)
	return len(f), err
}

func (g grpcTarget) createEncoded(ctx context.Context, e *client.EncodedTransfers) (int, error) {
	f, err := g.c.CreateEncodedTransfers(ctx, e)
	return len(f), err
}

func (g grpcTarget) lookupAccounts(ctx context.Context, ids []uint64) ([]*ledgerv1.Account, error) {
	return g.c.LookupAccounts(ctx, ids)
}

func (g grpcTarget) close() error {
	var err error
	if g.streams != nil {
		err = g.streams.close()
	}
	return errors.Join(err, g.c.Close())
}

// inProcess calls the ledger directly: what the ledger costs without gRPC.
type inProcess struct{ l *actors.Ledger }

func (p inProcess) createAccounts(_ context.Context, as []*ledgerv1.Account) (int, error) {
	in := make([]ledger.Account, len(as))
	for i, a := range as {
		in[i] = api.AccountFromProto(a)
	}
	rs, err := p.l.CreateAccounts(in)
	failed := 0
	for _, r := range rs {
		if r != ledger.AccountResultOK {
			failed++
		}
	}
	return failed, err
}

func (p inProcess) createTransfers(_ context.Context, ts []*ledgerv1.Transfer) (int, error) {
	in := make([]ledger.Transfer, len(ts))
	for i, t := range ts {
		in[i] = api.TransferFromProto(t)
	}
	rs, err := p.l.CreateTransfers(in)
	failed := 0
	for _, r := range rs {
		if r != ledger.ResultOK {
			failed++
		}
	}
	return failed, err
}

func (p inProcess) lookupAccounts(_ context.Context, ids []uint64) ([]*ledgerv1.Account, error) {
	var out []*ledgerv1.Account
	err := p.l.Read(func(v *storage.Reader) error {
		return v.Accounts(ids, func(a ledger.Account) { out = append(out, api.AccountToProto(&a)) })
	})
	return out, err
}

func (p inProcess) close() error { return nil }

// embedded is a ledger this process runs: a real Pebble store with synced WAL, the same
// actors, and (unless in process) the real gRPC server on loopback.
type embedded struct {
	target
	store  *storage.Store
	seq    *events.Sequencer
	sub    *follower // --subscribe
	ledger *actors.Ledger
	server *grpc.Server
	pay    *payLayer // the payment layer, when the run uses it
	tmp    string
}

func startEmbedded(c *Config) (*embedded, error) {
	e := &embedded{}
	dir := c.DataDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "ledger-bench-")
		if err != nil {
			return nil, err
		}
		e.tmp, dir = tmp, tmp
	} else if c.Shadow {
		dir = filepath.Join(dir, "shadow") // 影子库: the load test's own store
	}
	store, err := storage.Open(dir, storage.Options{Shards: uint32(c.Shards), BackgroundNice: c.BackgroundNice})
	if err != nil {
		return nil, errors.Join(err, e.cleanup())
	}
	e.store = store
	// The event stream runs as in ledgerd (a ledger's rounds always write their events).
	if e.seq, err = events.Start(store, events.Config{RetainEvents: events.RetainEventsDefault,
		Fatal: func(err error) { panic(err) }}); err != nil {
		return nil, errors.Join(err, e.close())
	}
	l, err := actors.Start(store, actors.Config{Shards: uint32(c.Shards), HotFlushInterval: c.HotFlushInterval, Events: e.seq})
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	e.ledger = l
	if c.paymentLayer() {
		if e.pay, err = startPayLayer(c, e); err != nil {
			return nil, errors.Join(err, e.close())
		}
	}
	if c.InProcess {
		e.target = inProcess{l: l}
		if c.Subscribe {
			e.sub = followDirect(e.seq)
		}
		if e.pay != nil {
			e.pay.caller = inProcessPayments{s: api.NewPaymentService(api.Payments(e.pay.engine), nil)}
		}
		return e, nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	e.server, _ = api.NewServer(api.NewService(l, nil, api.WithEvents(e.seq)))
	if e.pay != nil {
		api.RegisterPayments(e.server, api.Payments(e.pay.engine), nil)
	}
	go func() { _ = e.server.Serve(lis) }()
	cl, err := client.Dial(lis.Addr().String(), client.Options{})
	if err != nil {
		return nil, errors.Join(err, e.close())
	}
	g := grpcTarget{c: cl}
	if err := g.dialStreams(c, lis.Addr().String(), client.Security{}); err != nil {
		return nil, errors.Join(err, cl.Close(), e.close())
	}
	e.target = g
	if c.Subscribe {
		if e.sub, err = followGRPC(lis.Addr().String(), client.Security{}, 0, sequencerLast(e.seq), lagSampleEmbedded); err != nil {
			return nil, errors.Join(err, e.close())
		}
	}
	if e.pay != nil {
		if err := e.pay.dialPayments(lis.Addr().String(), client.Security{}); err != nil {
			return nil, errors.Join(err, e.close())
		}
	}
	return e, nil
}

func (e *embedded) close() error {
	var errs []error
	if e.sub != nil {
		errs = append(errs, e.sub.finish())
	}
	if e.target != nil {
		errs = append(errs, e.target.close())
	}
	if e.server != nil {
		e.server.Stop()
	}
	if e.pay != nil {
		errs = append(errs, e.pay.close())
	}
	if e.ledger != nil {
		e.ledger.Stop()
	}
	if e.seq != nil {
		e.seq.Stop()
	}
	if e.store != nil {
		errs = append(errs, e.store.Close())
	}
	return errors.Join(append(errs, e.cleanup())...)
}

func (e *embedded) cleanup() error {
	if e.tmp != "" {
		return os.RemoveAll(e.tmp)
	}
	return nil
}

type remote struct {
	grpcTarget
	sub *follower
}

// dialRemote connects to ledgerd at c.Addr; with c.Subscribe it follows the event stream from
// its next sequence (what the run writes), its head read from ledgerd's metrics.
func dialRemote(c *Config) (target, error) {
	if c.Subscribe && c.MetricsAddr == "" {
		return nil, errors.New("bench: --subscribe with --addr needs --metrics-addr (the stream's head is read there)")
	}
	cl, err := client.Dial(c.Addr, client.Options{Security: c.Security})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	r := &remote{grpcTarget: grpcTarget{c: cl}}
	if err := r.dialStreams(c, c.Addr, c.Security); err != nil {
		return nil, errors.Join(err, cl.Close())
	}
	if c.Subscribe {
		last := scrapedLast(c.MetricsAddr)
		head, err := last()
		if err == nil {
			r.sub, err = followGRPC(c.Addr, c.Security, head, last, lagSampleRemote)
		}
		if err != nil {
			return nil, errors.Join(err, cl.Close())
		}
	}
	return r, nil
}

func (r *remote) close() error {
	var errs []error
	if r.sub != nil {
		errs = append(errs, r.sub.finish())
	}
	return errors.Join(append(errs, r.grpcTarget.close())...)
}
