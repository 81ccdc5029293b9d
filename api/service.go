// Package api serves the ledger over gRPC: it validates requests, translates between the wire
// contract and the domain, and maps errors to gRPC codes in one table. Reads go straight to
// storage, which holds only durable state.
package api

import (
	"context"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/ledger"
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
}

// NewService serves l; m counts results (nil: not counted).
func NewService(l *actors.Ledger, m *Metrics) *Service {
	return &Service{ledger: l, metrics: m}
}

// NewServer returns a gRPC server with the ledger and admin services, the standard health
// service (reported by the returned *health.Server) and server reflection registered.
func NewServer(svc *Service, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append([]grpc.ServerOption{grpc.MaxRecvMsgSize(RequestBytesMax)}, opts...)
	if svc.metrics != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(svc.metrics.unaryInterceptor))
	}
	srv := grpc.NewServer(opts...)
	ledgerv1.RegisterLedgerServiceServer(srv, svc)
	ledgerv1.RegisterAdminServiceServer(srv, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
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
	if err := checkBatch(len(req.GetTransfers()), "transfers"); err != nil {
		return nil, toStatus(err)
	}
	ts := make([]ledger.Transfer, len(req.GetTransfers()))
	for i, t := range req.GetTransfers() {
		ts[i] = TransferFromProto(t)
	}
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

func checkIDs(ids []uint64) error {
	if len(ids) > LookupIDsMax {
		return invalid("%d ids; at most %d per lookup", len(ids), LookupIDsMax)
	}
	return nil
}

// LookupAccounts implements LedgerService.
func (s *Service) LookupAccounts(_ context.Context, req *ledgerv1.LookupAccountsRequest) (*ledgerv1.LookupAccountsResponse, error) {
	if err := checkIDs(req.GetIds()); err != nil {
		return nil, toStatus(err)
	}
	v := s.ledger.Store().View()
	resp := &ledgerv1.LookupAccountsResponse{}
	var hot []int // positions in resp of hot accounts
	err := v.Accounts(req.GetIds(), func(a ledger.Account) {
		if a.Flags&ledger.AccountHot != 0 {
			hot = append(hot, len(resp.Accounts))
		}
		resp.Accounts = append(resp.Accounts, AccountToProto(&a))
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if len(hot) > 0 {
		if err := s.buffered(resp.Accounts, hot); err != nil {
			return nil, toStatus(err)
		}
	}
	return resp, nil
}

// buffered reads the hot accounts again, with their inflows still in buffers, from one
// snapshot: each such inflow counts once, either as buffered or in the balance.
func (s *Service) buffered(accounts []*ledgerv1.Account, hot []int) error {
	snap := s.ledger.Store().Snapshot()
	defer snap.Close()
	sums := make(map[uint64]uint64, len(hot))
	for _, i := range hot {
		sums[accounts[i].GetId()] = 0
	}
	if err := snap.InflowsInTransit(sums); err != nil {
		return err
	}
	for _, i := range hot {
		a, found, err := snap.Account(accounts[i].GetId())
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("api: account %d vanished between two reads", accounts[i].GetId())
		}
		accounts[i] = AccountToProto(&a)
		accounts[i].CreditsBuffered = sums[a.ID]
	}
	return nil
}

// LookupTransfers implements LedgerService.
func (s *Service) LookupTransfers(_ context.Context, req *ledgerv1.LookupTransfersRequest) (*ledgerv1.LookupTransfersResponse, error) {
	if err := checkIDs(req.GetIds()); err != nil {
		return nil, toStatus(err)
	}
	v := s.ledger.Store().View()
	resp := &ledgerv1.LookupTransfersResponse{}
	for _, id := range req.GetIds() {
		t, found, err := v.Transfer(id)
		if err != nil {
			return nil, toStatus(err)
		}
		if found {
			resp.Transfers = append(resp.Transfers, TransferToProto(&t))
		}
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
	snap := s.ledger.Store().Snapshot()
	defer snap.Close()
	postings, next, err := snap.Postings(f)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetAccountTransfersResponse{NextTimestamp: next}
	seen := make(map[uint64]bool, len(postings))
	for _, p := range postings {
		if seen[p.TransferID] {
			continue
		}
		seen[p.TransferID] = true
		t, found, err := snap.Transfer(p.TransferID)
		if err != nil {
			return nil, toStatus(err)
		}
		if !found {
			return nil, toStatus(fmt.Errorf("posting of account %d at %d names missing transfer %d",
				p.Account, p.Timestamp, p.TransferID))
		}
		resp.Transfers = append(resp.Transfers, TransferToProto(&t))
	}
	return resp, nil
}

// GetAccountBalances implements LedgerService: empty for accounts not flagged history.
func (s *Service) GetAccountBalances(_ context.Context, req *ledgerv1.GetAccountBalancesRequest) (*ledgerv1.GetAccountBalancesResponse, error) {
	f, err := postingFilter(req.GetFilter())
	if err != nil {
		return nil, toStatus(err)
	}
	snap := s.ledger.Store().Snapshot()
	defer snap.Close()
	a, found, err := snap.Account(f.Account)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetAccountBalancesResponse{}
	if !found || a.Flags&ledger.AccountHistory == 0 {
		return resp, nil
	}
	postings, next, err := snap.Postings(f)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.NextTimestamp = next
	for _, p := range postings {
		resp.Balances = append(resp.Balances, &ledgerv1.AccountBalance{Timestamp: p.Timestamp,
			TransferId: p.TransferID, DebitsPending: p.After.DebitsPending, DebitsPosted: p.After.DebitsPosted,
			CreditsPending: p.After.CreditsPending, CreditsPosted: p.After.CreditsPosted})
	}
	return resp, nil
}

// Verify implements AdminService.
func (s *Service) Verify(_ context.Context, _ *ledgerv1.VerifyRequest) (*ledgerv1.VerifyResponse, error) {
	snap := s.ledger.Store().Snapshot()
	defer snap.Close()
	rep, err := storage.Verify(snap, s.ledger.Shards())
	if err != nil {
		return nil, toStatus(err)
	}
	if len(rep.Problems) > 0 {
		slog.Error("verify found problems", "count", len(rep.Problems), "first", rep.Problems[0])
	}
	return &ledgerv1.VerifyResponse{Problems: rep.Problems, Accounts: rep.Accounts, Postings: rep.Postings,
		OutboxLegs: rep.OutboxLegs}, nil
}
