// Package api serves the ledger over gRPC: it validates requests, translates between the wire
// contract and the domain, and maps errors to gRPC codes in one table. Reads go through the
// ledger (actors.Ledger.Read), on snapshots in which everything is durable.
package api

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/rules"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Limits of the API (units last).
const (
	// RequestBytesMax is the largest request message the server takes: a full batch of
	// transfers with long business ids fits.
	RequestBytesMax = 4 << 20
	// LookupIDsMax is the most ids in one lookup.
	LookupIDsMax = ledger.BatchEventsMax
	// PageResultsMax is the most results of one history page.
	PageResultsMax = ledger.BatchEventsMax
)

// Service implements ledger.v1.LedgerService and ledger.v1.AdminService.
type Service struct {
	ledgerv1.UnimplementedLedgerServiceServer
	ledgerv1.UnimplementedAdminServiceServer
	ledger  *actors.Ledger
	metrics *Metrics
	chart   *rules.Chart // the trial balance's; nil: rules.Default
	events  *events.Sequencer
	eod     *eod.Runner // end of day; nil: not served
	backups *backups    // nil: backups are off
	verify  *verifyGate
	gather  gatherer // CreateTransfersStream's batches
	// streams counts the open transfer streams; streamsEnd, closed by EndTransferStreams,
	// ends them.
	streams    atomic.Int64
	streamsEnd chan struct{}
	endStreams sync.Once
	// currencies name the ledgers' currencies for reports (nil: none known).
	currencies accounting.Currencies
	// sendTimeout is the subscribers' send deadline (0: SubscribeSendTimeoutDefault).
	sendTimeout time.Duration
}

// NewService serves l; m counts results (nil: not counted).
func NewService(l *actors.Ledger, m *Metrics, opts ...Option) *Service {
	s := &Service{ledger: l, metrics: m, verify: newVerifyGate(VerifyIntervalDefault, m)}
	s.gather.s = s
	s.streamsEnd = make(chan struct{})
	for _, o := range opts {
		o(s)
	}
	return s
}

// NewServer returns a gRPC server with the ledger service, the standard health service
// (reported by the returned *health.Server) and server reflection registered. The admin
// service is not on it: NewAdminServer serves it on a listener of its own.
func NewServer(svc *Service, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	srv := newServer(svc, opts)
	srv.RegisterService(ledgerServiceDesc, svc)
	return srv, registerCommon(srv)
}

// ledgerServiceDesc is the generated LedgerService, with createTransfersHandler as
// CreateTransfers's handler.
var ledgerServiceDesc = func() *grpc.ServiceDesc {
	d := ledgerv1.LedgerService_ServiceDesc
	d.Methods = slices.Clone(d.Methods)
	i := slices.IndexFunc(d.Methods, func(m grpc.MethodDesc) bool { return m.MethodName == "CreateTransfers" })
	if i < 0 {
		panic("api: INVARIANT: the generated LedgerService has no CreateTransfers")
	}
	d.Methods[i].Handler = createTransfersHandler
	return &d
}()

// createTransfersHandler is the generated CreateTransfers handler, except that the request is
// a createTransfersRequest, which serverCodec decodes straight into the ledger's transfers;
// the interceptors see it as they see any request. Bytes that are no request answer
// INVALID_ARGUMENT (gRPC's own decoding answered INTERNAL).
func createTransfersHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(createTransfersRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	handle := func(_ context.Context, req any) (any, error) {
		r := req.(*createTransfersRequest)
		err := r.err
		if err == nil {
			err = checkTransfers(r.n, r.ts)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return srv.(*Service).createTransfers(r.ts)
	}
	if interceptor == nil {
		return handle(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: ledgerv1.LedgerService_CreateTransfers_FullMethodName}
	return interceptor(ctx, in, info, handle)
}

// NewAdminServer returns a gRPC server with the admin service (Verify, TrialBalance, end of
// day, Backup), its own health service and server reflection registered: ledgerd serves it on
// --admin-listen, apart from the clients' --listen.
func NewAdminServer(svc *Service, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	srv := newServer(svc, opts)
	ledgerv1.RegisterAdminServiceServer(srv, svc)
	return srv, registerCommon(srv)
}

func newServer(svc *Service, opts []grpc.ServerOption) *grpc.Server {
	// A handler's panic (a bug: no input may cause one) answers its call INTERNAL, logged and
	// counted, instead of ending the process and every other caller's calls with it. The
	// shards and their commits run on goroutines of their own, which this does not cover.
	recovered := recovery.WithRecoveryHandlerContext(svc.metrics.recovered)
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(RequestBytesMax),
		grpc.ForceServerCodecV2(serverCodec{proto: encoding.GetCodecV2(protoenc.Name)}),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recovered)),
		grpc.ChainStreamInterceptor(recovery.StreamServerInterceptor(recovered))}, opts...)
	if svc.metrics != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(svc.metrics.unaryInterceptor))
	}
	return grpc.NewServer(opts...)
}

func registerCommon(srv *grpc.Server) *health.Server {
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return hs
}

func checkBatch(n int, what string) error {
	if n == 0 {
		return invalid("no %s", what)
	}
	if n > ledger.BatchEventsMax {
		return invalid("%d %s; at most %d per request", n, what, ledger.BatchEventsMax)
	}
	return nil
}

// CreateAccounts implements LedgerService.
func (s *Service) CreateAccounts(_ context.Context, req *ledgerv1.CreateAccountsRequest) (*ledgerv1.CreateAccountsResponse, error) {
	if err := checkBatch(len(req.GetAccounts()), "accounts"); err != nil {
		return nil, toStatus(err)
	}
	as := make([]ledger.Account, len(req.GetAccounts()))
	for i, a := range req.GetAccounts() {
		if id := a.GetId(); payment.IsPlatformAccount(id) {
			return nil, toStatus(invalid("accounts[%d].id: %d is in the range of the payment layer's own accounts (2^62+2^61 to 2^63-1)", i, id))
		}
		as[i] = AccountFromProto(a)
	}
	results, err := s.ledger.CreateAccounts(as)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.CreateAccountsResponse{}
	for i, r := range results {
		s.metrics.countAccount(r)
		if r != ledger.AccountResultOK {
			resp.Results = append(resp.Results, &ledgerv1.CreateAccountsResult{Index: uint32(i),
				Result: ledgerv1.CreateAccountResult(r)})
		}
	}
	return resp, nil
}

// CreateTransfers implements LedgerService.
func (s *Service) CreateTransfers(_ context.Context, req *ledgerv1.CreateTransfersRequest) (*ledgerv1.CreateTransfersResponse, error) {
	ts, err := transfersFromProto(req.GetTransfers())
	if err != nil {
		return nil, toStatus(err)
	}
	return s.createTransfers(ts)
}

// createTransfers runs a CreateTransfers request's transfers, checked (checkTransfers).
func (s *Service) createTransfers(ts []ledger.Transfer) (*ledgerv1.CreateTransfersResponse, error) {
	results, err := s.ledger.CreateTransfers(ts)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.CreateTransfersResponse{}
	for i, r := range results {
		s.metrics.countTransfer(r)
		if r != ledger.ResultOK {
			resp.Results = append(resp.Results, &ledgerv1.CreateTransfersResult{Index: uint32(i),
				Result: ledgerv1.CreateTransferResult(r)})
		}
	}
	return resp, nil
}

// transfersFromProto checks a CreateTransfers request's transfers and converts them.
func transfersFromProto(pb []*ledgerv1.Transfer) ([]ledger.Transfer, error) {
	if err := checkBatch(len(pb), "transfers"); err != nil {
		return nil, err
	}
	ts := make([]ledger.Transfer, len(pb))
	for i, t := range pb {
		ts[i] = TransferFromProto(t)
	}
	return ts, checkTransfers(len(ts), ts)
}

// checkTransfers refuses a request of n transfers, ts, that no client may send.
func checkTransfers(n int, ts []ledger.Transfer) error {
	if err := checkBatch(n, "transfers"); err != nil {
		return err
	}
	for i := range ts {
		// The payment layer's transfers (and its holds) are its own: a client that made one
		// first, or posted or voided one of its holds, could break a payment's bookkeeping.
		if ts[i].ID >= 1<<63 {
			return invalid("transfers[%d].id: ids from 2^63 are reserved for the payment layer's transfers", i)
		}
		if ts[i].PendingID >= 1<<63 {
			return invalid("transfers[%d].pending_id: the payment layer's holds are posted and voided by their orders only", i)
		}
	}
	return nil
}

func checkIDs(ids []uint64) error {
	if len(ids) == 0 {
		return invalid("no ids")
	}
	if len(ids) > LookupIDsMax {
		return invalid("%d ids; at most %d per lookup", len(ids), LookupIDsMax)
	}
	return nil
}

// LookupAccounts implements LedgerService. A hot account shows its inflows still in buffers
// as credits_buffered, read from the same snapshot as its balance: each such inflow counts
// once, either as buffered or in the balance.
func (s *Service) LookupAccounts(_ context.Context, req *ledgerv1.LookupAccountsRequest) (*ledgerv1.LookupAccountsResponse, error) {
	if err := checkIDs(req.GetIds()); err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.LookupAccountsResponse{}
	err := s.ledger.Read(func(v *storage.Reader) error {
		var hot map[uint64]ledger.Uint128
		err := v.Accounts(req.GetIds(), func(a ledger.Account) {
			if a.Flags&ledger.AccountHot != 0 {
				if hot == nil {
					hot = map[uint64]ledger.Uint128{}
				}
				hot[a.ID] = ledger.Uint128{}
			}
			resp.Accounts = append(resp.Accounts, AccountToProto(&a))
		})
		if err != nil || hot == nil {
			return err
		}
		if err := v.InflowsInTransit(hot); err != nil {
			return err
		}
		for _, a := range resp.Accounts {
			if sum, ok := hot[a.GetId()]; ok {
				a.CreditsBuffered = u128ToProto(sum)
			}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// LookupTransfers implements LedgerService.
func (s *Service) LookupTransfers(_ context.Context, req *ledgerv1.LookupTransfersRequest) (*ledgerv1.LookupTransfersResponse, error) {
	if err := checkIDs(req.GetIds()); err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.LookupTransfersResponse{}
	err := s.ledger.Read(func(v *storage.Reader) error {
		for _, id := range req.GetIds() {
			t, found, err := v.Transfer(id)
			if err != nil {
				return err
			}
			if found {
				resp.Transfers = append(resp.Transfers, TransferToProto(&t))
			}
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func postingFilter(f *ledgerv1.AccountFilter) (storage.PostingFilter, error) {
	if f.GetAccountId() == 0 {
		return storage.PostingFilter{}, invalid("filter.account_id must not be zero")
	}
	if f.GetTimestampMax() != 0 && f.GetTimestampMin() > f.GetTimestampMax() {
		return storage.PostingFilter{}, invalid("filter.timestamp_min is after filter.timestamp_max")
	}
	limit := int(f.GetLimit())
	if limit == 0 {
		limit = PageResultsMax
	}
	if limit > PageResultsMax {
		return storage.PostingFilter{}, invalid("filter.limit %d; at most %d", limit, PageResultsMax)
	}
	return storage.PostingFilter{Account: f.GetAccountId(), TimestampMin: f.GetTimestampMin(),
		TimestampMax: f.GetTimestampMax(), Limit: limit, Reversed: f.GetReversed(),
		Debits: f.GetDebits(), Credits: f.GetCredits()}, nil
}

// GetAccountTransfers implements LedgerService: the transfers behind the account's postings,
// in posting order, each once.
func (s *Service) GetAccountTransfers(_ context.Context, req *ledgerv1.GetAccountTransfersRequest) (*ledgerv1.GetAccountTransfersResponse, error) {
	f, err := postingFilter(req.GetFilter())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetAccountTransfersResponse{}
	err = s.ledger.Read(func(v *storage.Reader) error {
		postings, next, err := v.Postings(f)
		if err != nil {
			return err
		}
		resp.NextTimestamp = next
		seen := make(map[uint64]bool, len(postings))
		for _, p := range postings {
			if seen[p.TransferID] {
				continue
			}
			seen[p.TransferID] = true
			t, found, err := v.Transfer(p.TransferID)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("posting of account %d at %d names missing transfer %d",
					p.Account, p.Timestamp, p.TransferID)
			}
			resp.Transfers = append(resp.Transfers, TransferToProto(&t))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// GetAccountBalances implements LedgerService: empty for accounts not flagged history.
func (s *Service) GetAccountBalances(_ context.Context, req *ledgerv1.GetAccountBalancesRequest) (*ledgerv1.GetAccountBalancesResponse, error) {
	f, err := postingFilter(req.GetFilter())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetAccountBalancesResponse{}
	err = s.ledger.Read(func(v *storage.Reader) error {
		a, found, err := v.Account(f.Account)
		if err != nil || !found || a.Flags&ledger.AccountHistory == 0 {
			return err
		}
		postings, next, err := v.Postings(f)
		if err != nil {
			return err
		}
		resp.NextTimestamp = next
		for _, p := range postings {
			resp.Balances = append(resp.Balances, &ledgerv1.AccountBalance{Timestamp: p.Timestamp,
				TransferId: p.TransferID, DebitsPending: u128ToProto(p.After.DebitsPending),
				DebitsPosted: u128ToProto(p.After.DebitsPosted), CreditsPending: u128ToProto(p.After.CreditsPending),
				CreditsPosted: u128ToProto(p.After.CreditsPosted), Day: uint32(p.Day)})
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}
