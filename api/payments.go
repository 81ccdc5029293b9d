package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/grpc"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// Limits of the payment API (units last).
const (
	// PaymentRequestsMax is the most payment requests in one CreatePayments call.
	PaymentRequestsMax = 1024
	// OrderIDsMax is the most ids in one GetOrders call.
	OrderIDsMax = 8190
	// OrderPageMax is the most orders one page (GetOrdersByBizId, ListExceptions) may ask for.
	OrderPageMax = 1000
	// OrderPageDefault is the page size when a request's limit is 0.
	OrderPageDefault = 100
)

// ErrUnknownChannel: no payment channel has that name (NOT_FOUND). An engine wraps it.
var ErrUnknownChannel = errors.New("unknown payment channel")

// ErrReconcileTooLarge: a business id has more orders or transfers than one reconciliation
// reads (FAILED_PRECONDITION). An engine wraps it.
var ErrReconcileTooLarge = errors.New("too many orders or transfers under the business id to reconcile at once")

// ReconDifferencesMax is the most differences ReconcileBizId lists (it counts them all).
const ReconDifferencesMax = 1000

// BizRecon is what the reconciliation of one business id found: how many orders and ledger
// transfers carry it, and every disagreement among them (payment.Reconcile).
type BizRecon struct {
	Orders, Transfers int
	Differences       []payment.Difference
}

// PaymentReply is the engine's answer to one payment request: the result and, with ResultOK
// or ResultExists, the order as it stands (durable).
type PaymentReply struct {
	Result payment.Result
	Order  *payment.Order
}

// Circuit breaker states of ChannelStatus.Circuit (as gateway.CircuitState).
const (
	CircuitClosed   = 0
	CircuitHalfOpen = 1
	CircuitOpen     = 2
)

// ChannelStatus is a payment channel's state.
type ChannelStatus struct {
	Name     string
	Degraded bool // switched off by an operator
	Circuit  int  // CircuitClosed, CircuitHalfOpen or CircuitOpen
	InFlight int  // requests at the channel
	Queued   int  // requests waiting for a slot or a rate token
}

// PaymentEngine is what serves payment orders (the payment actors and their storage). Every
// order it returns is durable as returned. Its errors are those of the ledger's kinds
// (actors.ErrOverloaded, actors.ErrStopped, a storage failure), wrapped or not, mapped by
// codeOf; a request's own outcome is a payment.Result, not an error.
type PaymentEngine interface {
	// Create takes the requests and answers one reply per request, in order.
	Create(reqs []payment.Request) ([]PaymentReply, error)
	// Orders returns the orders with the ids, one entry per id: nil for a missing id.
	Orders(ids []uint64) ([]*payment.Order, error)
	// OrdersByBizID returns at most limit orders of the business id, oldest first.
	OrdersByBizID(bizID string, limit int) ([]*payment.Order, error)
	// TransfersByBizID returns the ids of at most limit durable ledger transfers that carry
	// the business id, ascending.
	TransfersByBizID(bizID string, limit int) ([]uint64, error)
	// Reconcile checks a business id's orders, their channel outcomes and the ledger
	// transfers carrying it against each other, on one durable snapshot; its error wraps
	// ErrReconcileTooLarge when the business id has too many of them.
	Reconcile(bizID string) (BizRecon, error)
	// Exceptions returns at most limit orders with exception records (with a record not
	// resolved, unless includeResolved), by ascending id greater than afterOrder.
	Exceptions(includeResolved bool, afterOrder uint64, limit int) ([]*payment.Order, error)
	// Resolve applies an operator's resolution to exception index of the order; it answers
	// the order as it stands (nil if there is no such order).
	Resolve(orderID uint64, index int, how payment.Resolution, note string) (payment.Result, *payment.Order, error)
	// SetDegraded switches a channel off or on; its error wraps ErrUnknownChannel for an
	// unknown name.
	SetDegraded(channel string, degraded bool) (ChannelStatus, error)
	// Channels returns every channel's status.
	Channels() []ChannelStatus
}

// PaymentService implements ledger.v1.PaymentService on a PaymentEngine.
type PaymentService struct {
	ledgerv1.UnimplementedPaymentServiceServer
	engine  PaymentEngine
	metrics *Metrics
	// currency is the ISO 4217 code of a ledger's currency, for the orders and exception
	// records it answers (nil: none known).
	currency func(ledger uint32) string
}

// PaymentOption configures a PaymentService.
type PaymentOption func(*PaymentService)

// WithOrderCurrency names the currency of each order's ledger (ISO 4217; ledgerd gives the
// payment layer's, the one its channels are asked in): the orders and exception records it
// answers carry it, for clients to print their amounts in. Events do not carry it.
func WithOrderCurrency(currency func(ledger uint32) string) PaymentOption {
	return func(s *PaymentService) { s.currency = currency }
}

// NewPaymentService serves e; m counts results (nil: not counted).
func NewPaymentService(e PaymentEngine, m *Metrics, opts ...PaymentOption) *PaymentService {
	s := &PaymentService{engine: e, metrics: m}
	for _, o := range opts {
		o(s)
	}
	return s
}

// order is o on the wire with its currency.
func (s *PaymentService) order(o *payment.Order) *ledgerv1.PaymentOrder {
	out := OrderToProto(o)
	if s.currency != nil {
		out.Currency = s.currency(o.Ledger)
		for _, x := range out.Exceptions {
			x.Currency = out.Currency
		}
	}
	return out
}

// exception is exception k of o on the wire with its currency.
func (s *PaymentService) exception(o *payment.Order, k int) *ledgerv1.PaymentException {
	out := ExceptionToProto(o, k)
	if s.currency != nil {
		out.Currency = s.currency(o.Ledger)
	}
	return out
}

// RegisterPayments registers the payment service on srv, typically the server from NewServer
// before it serves (whose interceptor then times the payment calls too); m counts results (nil:
// not counted).
func RegisterPayments(srv *grpc.Server, e PaymentEngine, m *Metrics, opts ...PaymentOption) *PaymentService {
	ps := NewPaymentService(e, m, opts...)
	ledgerv1.RegisterPaymentServiceServer(srv, ps)
	return ps
}

// checkPaymentRequest refuses what the domain cannot even represent: enum values the wire
// does not define, and output-only fields. UNSPECIFIED values pass: the engine answers them
// as a result (form_unknown, instrument_unknown), like every other domain check.
func checkPaymentRequest(i int, r *ledgerv1.PaymentRequest) error {
	if f := r.GetForm(); f < 0 || f > ledgerv1.PaymentForm_PAYMENT_FORM_PAY {
		return invalid("requests[%d].form: unknown form %d", i, int32(f))
	}
	for j, in := range r.GetInstruments() {
		if k := in.GetKind(); k < 0 || k > ledgerv1.InstrumentKind_INSTRUMENT_KIND_CARD {
			return invalid("requests[%d].instruments[%d].kind: unknown instrument kind %d", i, j, int32(k))
		}
		if in.GetRefunded() != 0 {
			return invalid("requests[%d].instruments[%d].refunded: output only, must be 0", i, j)
		}
	}
	return nil
}

// CreatePayments implements PaymentService.
func (s *PaymentService) CreatePayments(_ context.Context, req *ledgerv1.CreatePaymentsRequest) (*ledgerv1.CreatePaymentsResponse, error) {
	n := len(req.GetRequests())
	if n == 0 {
		return nil, toStatus(invalid("no requests"))
	}
	if n > PaymentRequestsMax {
		return nil, toStatus(invalid("%d requests; at most %d per call", n, PaymentRequestsMax))
	}
	reqs := make([]payment.Request, n)
	for i, r := range req.GetRequests() {
		if err := checkPaymentRequest(i, r); err != nil {
			return nil, toStatus(err)
		}
		reqs[i] = PaymentRequestFromProto(r)
	}
	replies, err := s.engine.Create(reqs)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(replies) != n {
		return nil, toStatus(fmt.Errorf("payment engine answered %d replies to %d requests", len(replies), n))
	}
	resp := &ledgerv1.CreatePaymentsResponse{Results: make([]*ledgerv1.CreatePaymentsResult, n)}
	for i, rep := range replies {
		res := &ledgerv1.CreatePaymentsResult{Index: uint32(i), Result: ledgerv1.PaymentResult(rep.Result)}
		if rep.Result == payment.ResultOK || rep.Result == payment.ResultExists {
			if rep.Order == nil {
				return nil, toStatus(fmt.Errorf("payment engine answered %v without an order to request %d", rep.Result, i))
			}
			res.Order = s.order(rep.Order)
		}
		s.metrics.countPayment(reqs[i].Form, rep.Result)
		resp.Results[i] = res
	}
	return resp, nil
}

// GetOrders implements PaymentService.
func (s *PaymentService) GetOrders(_ context.Context, req *ledgerv1.GetOrdersRequest) (*ledgerv1.GetOrdersResponse, error) {
	ids := req.GetIds()
	if len(ids) == 0 {
		return nil, toStatus(invalid("no ids"))
	}
	if len(ids) > OrderIDsMax {
		return nil, toStatus(invalid("%d ids; at most %d per lookup", len(ids), OrderIDsMax))
	}
	orders, err := s.engine.Orders(ids)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetOrdersResponse{}
	for _, o := range orders {
		if o != nil {
			resp.Orders = append(resp.Orders, s.order(o))
		}
	}
	return resp, nil
}

// pageLimit is a request's page size: 0 means OrderPageDefault.
func pageLimit(limit uint32) (int, error) {
	switch {
	case limit == 0:
		return OrderPageDefault, nil
	case limit > OrderPageMax:
		return 0, invalid("limit %d; at most %d", limit, OrderPageMax)
	}
	return int(limit), nil
}

// GetOrdersByBizId implements PaymentService.
func (s *PaymentService) GetOrdersByBizId(_ context.Context, req *ledgerv1.GetOrdersByBizIdRequest) (*ledgerv1.GetOrdersByBizIdResponse, error) {
	biz := req.GetBizId()
	if biz == "" {
		return nil, toStatus(invalid("biz_id is required"))
	}
	if len(biz) > ledger.BizIDBytesMax {
		return nil, toStatus(invalid("biz_id: %d bytes; at most %d", len(biz), ledger.BizIDBytesMax))
	}
	limit, err := pageLimit(req.GetLimit())
	if err != nil {
		return nil, toStatus(err)
	}
	orders, err := s.engine.OrdersByBizID(biz, limit)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.GetOrdersByBizIdResponse{}
	for _, o := range orders {
		if o == nil {
			continue
		}
		resp.Orders = append(resp.Orders, s.order(o))
	}
	if resp.TransferIds, err = s.engine.TransfersByBizID(biz, ledger.BatchEventsMax); err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// ReconcileBizId implements PaymentService.
func (s *PaymentService) ReconcileBizId(_ context.Context, req *ledgerv1.ReconcileBizIdRequest) (*ledgerv1.ReconcileBizIdResponse, error) {
	biz := req.GetBizId()
	if biz == "" {
		return nil, toStatus(invalid("biz_id is required"))
	}
	if len(biz) > ledger.BizIDBytesMax {
		return nil, toStatus(invalid("biz_id: %d bytes; at most %d", len(biz), ledger.BizIDBytesMax))
	}
	r, err := s.engine.Reconcile(biz)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.ReconcileBizIdResponse{Orders: uint32(r.Orders), Transfers: uint32(r.Transfers),
		DifferencesTotal: uint32(len(r.Differences))}
	for _, d := range r.Differences[:min(len(r.Differences), ReconDifferencesMax)] {
		resp.Differences = append(resp.Differences, d.String())
		resp.DifferenceDetails = append(resp.DifferenceDetails, ReconDifferenceToProto(&d))
	}
	return resp, nil
}

// ListExceptions implements PaymentService: a page counts orders, each with all its listed
// records, so that a page never splits an order.
func (s *PaymentService) ListExceptions(_ context.Context, req *ledgerv1.ListExceptionsRequest) (*ledgerv1.ListExceptionsResponse, error) {
	limit, err := pageLimit(req.GetLimit())
	if err != nil {
		return nil, toStatus(err)
	}
	if req.GetStatements() {
		return s.listStatementExceptions(req, limit)
	}
	if req.GetAfterStatement() != nil {
		return nil, toStatus(invalid("after_statement needs statements"))
	}
	orders, err := s.engine.Exceptions(req.GetIncludeResolved(), req.GetAfterOrderId(), limit)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(orders) > limit {
		orders = orders[:limit]
	}
	resp := &ledgerv1.ListExceptionsResponse{}
	var last uint64
	for _, o := range orders {
		if o == nil {
			continue
		}
		last = o.ID
		for k := range o.Exceptions {
			if req.GetIncludeResolved() || o.Exceptions[k].Step != payment.ExcResolved {
				resp.Exceptions = append(resp.Exceptions, s.exception(o, k))
			}
		}
	}
	if len(orders) == limit {
		resp.NextAfterOrderId = last
	}
	return resp, nil
}

// ResolveException implements PaymentService.
func (s *PaymentService) ResolveException(_ context.Context, req *ledgerv1.ResolveExceptionRequest) (*ledgerv1.ResolveExceptionResponse, error) {
	if req.GetStatement() != nil {
		return s.resolveStatement(req)
	}
	if req.GetOrderId() == 0 {
		return nil, toStatus(invalid("order_id must not be zero"))
	}
	how := req.GetResolution()
	switch {
	case how == ledgerv1.Resolution_RESOLUTION_UNSPECIFIED:
		return nil, toStatus(invalid("resolution is required"))
	case how < 0 || how > ledgerv1.Resolution_RESOLUTION_REVERSE:
		return nil, toStatus(invalid("resolution: unknown resolution %d", int32(how)))
	}
	result, order, err := s.engine.Resolve(req.GetOrderId(), int(req.GetIndex()), payment.Resolution(how), req.GetNote())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.ResolveExceptionResponse{Result: ledgerv1.PaymentResult(result)}
	if order != nil {
		resp.Order = s.order(order)
	}
	return resp, nil
}

// SetChannelDegraded implements PaymentService.
func (s *PaymentService) SetChannelDegraded(_ context.Context, req *ledgerv1.SetChannelDegradedRequest) (*ledgerv1.SetChannelDegradedResponse, error) {
	if req.GetChannel() == "" {
		return nil, toStatus(invalid("channel is required"))
	}
	st, err := s.engine.SetDegraded(req.GetChannel(), req.GetDegraded())
	if err != nil {
		return nil, toStatus(err)
	}
	return &ledgerv1.SetChannelDegradedResponse{Status: ChannelStatusToProto(st)}, nil
}

// ListChannels implements PaymentService.
func (s *PaymentService) ListChannels(_ context.Context, _ *ledgerv1.ListChannelsRequest) (*ledgerv1.ListChannelsResponse, error) {
	chans := slices.Clone(s.engine.Channels())
	slices.SortFunc(chans, func(a, b ChannelStatus) int { return cmp.Compare(a.Name, b.Name) })
	resp := &ledgerv1.ListChannelsResponse{}
	for _, c := range chans {
		resp.Channels = append(resp.Channels, ChannelStatusToProto(c))
	}
	return resp, nil
}
