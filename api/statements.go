package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// ErrStatementUnavailable: the channel did not hand over its statement (UNAVAILABLE). An
// engine wraps it.
var ErrStatementUnavailable = errors.New("the channel's statement could not be fetched")

// StatementImport is what an import of a channel's statement found (payments.StatementReport).
type StatementImport = payments.StatementReport

// StatementEngine is what serves channel reconciliation; a PaymentEngine that is not one
// answers its calls UNIMPLEMENTED.
type StatementEngine interface {
	// ImportStatement fetches, verifies and reconciles a channel's statement of a date; its
	// error wraps ErrUnknownChannel, errInvalid (a statement refused, a bad date) or
	// ErrStatementUnavailable.
	ImportStatement(ctx context.Context, channel, date string) (StatementImport, error)
	// StatementExceptions lists at most limit statement records after (channel, date, txn).
	StatementExceptions(includeResolved bool, channel, date, txn string, limit int) ([]*payment.StatementRecord, error)
	// ResolveStatement resolves the record of (channel, date, txn).
	ResolveStatement(channel, date, txn string, how payment.Resolution, note string) (payment.Result, *payment.StatementRecord, error)
}

func (p paymentActors) ImportStatement(ctx context.Context, name, date string) (StatementImport, error) {
	r, err := p.Engine.ImportStatement(ctx, name, date)
	switch {
	case errors.Is(err, payments.ErrUnknownChannel), errors.Is(err, payments.ErrNoStatements):
		return r, fmt.Errorf("%w: %w", ErrUnknownChannel, err)
	case errors.Is(err, channel.ErrBadStatement):
		return r, fmt.Errorf("%w: %w", errInvalid, err)
	case errors.Is(err, payments.ErrStatementFetch):
		return r, fmt.Errorf("%w: %w", ErrStatementUnavailable, err)
	}
	return r, err
}

func (s *PaymentService) statements() (StatementEngine, error) {
	se, ok := s.engine.(StatementEngine)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this server does not reconcile channel statements")
	}
	return se, nil
}

// ImportStatement implements PaymentService.
func (s *PaymentService) ImportStatement(ctx context.Context, req *ledgerv1.ImportStatementRequest) (*ledgerv1.ImportStatementResponse, error) {
	se, err := s.statements()
	if err != nil {
		return nil, err
	}
	if req.GetChannel() == "" {
		return nil, toStatus(invalid("channel is required"))
	}
	if _, err := payment.ParseDay(req.GetDate()); err != nil {
		return nil, toStatus(invalid("date: %v", err))
	}
	r, err := se.ImportStatement(ctx, req.GetChannel(), req.GetDate())
	if err != nil {
		return nil, toStatus(err)
	}
	c := func(k payment.LineClass) uint32 { return uint32(r.Counts[k]) }
	resp := &ledgerv1.ImportStatementResponse{Lines: uint32(r.Lines), Applied: uint32(r.Applied),
		NotApplied: uint32(r.NotApplied), Matched: c(payment.LineMatched), Duplicate: c(payment.LineDuplicate),
		Long: c(payment.LineLong), AmountMismatch: c(payment.LineAmount), StatusMismatch: c(payment.LineStatus),
		Short: c(payment.LineShort), Held: c(payment.LineHeld), Pending: uint32(r.Pending), NewRecords: uint32(r.NewRecords), Again: r.Again}
	for i := range r.Differences {
		resp.Differences = append(resp.Differences, DifferenceToProto(&r.Differences[i]))
	}
	for i := range r.Held {
		resp.HeldLines = append(resp.HeldLines, DifferenceToProto(&r.Held[i]))
	}
	return resp, nil
}

// DifferenceToProto translates a statement difference to the wire.
func DifferenceToProto(m *payment.Match) *ledgerv1.StatementDifference {
	st := func(s channel.Status) string {
		if s == 0 {
			return ""
		}
		return s.String()
	}
	return &ledgerv1.StatementDifference{Class: ledgerv1.StatementClass(m.Class), Txn: m.Txn, OrderNo: m.OrderNo,
		OrderId: m.Order, Op: m.Op.String(), TheirStatus: st(m.TheirStatus), TheirAmount: m.TheirAmount,
		OurStatus: st(m.OurStatus), OurAmount: m.OurAmount, Currency: m.Currency, Ledger: m.Ledger, BookedIn: m.In,
		ReversibleOut: m.Out, Note: m.Note}
}

// StatementExceptionToProto translates a statement record to the wire.
func StatementExceptionToProto(r *payment.StatementRecord) *ledgerv1.StatementException {
	out := &ledgerv1.StatementException{Key: &ledgerv1.StatementKey{Channel: r.Channel, Date: r.Day, Txn: r.Txn},
		Difference: DifferenceToProto(&r.Match), State: ledgerv1.ExceptionState(r.Step),
		CreatedNs: int64(r.Created), UpdatedNs: int64(r.Updated)}
	if r.In > 0 && r.Ledger != 0 {
		out.BookingTransferId = payment.StatementTransferID(r.Channel, r.Day, r.Txn, false)
	}
	if r.Out > 0 && r.Ledger != 0 {
		out.ReversalTransferId = payment.StatementTransferID(r.Channel, r.Day, r.Txn, true)
	}
	return out
}

// listStatementExceptions serves ListExceptions with statements.
func (s *PaymentService) listStatementExceptions(req *ledgerv1.ListExceptionsRequest, limit int) (*ledgerv1.ListExceptionsResponse, error) {
	se, err := s.statements()
	if err != nil {
		return nil, err
	}
	after := req.GetAfterStatement()
	recs, err := se.StatementExceptions(req.GetIncludeResolved(), after.GetChannel(), after.GetDate(), after.GetTxn(), limit)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.ListExceptionsResponse{}
	for _, r := range recs {
		resp.StatementExceptions = append(resp.StatementExceptions, StatementExceptionToProto(r))
	}
	if len(recs) == limit {
		resp.NextAfterStatement = resp.StatementExceptions[len(recs)-1].GetKey()
	}
	return resp, nil
}

// resolveStatement serves ResolveException with a statement key.
func (s *PaymentService) resolveStatement(req *ledgerv1.ResolveExceptionRequest) (*ledgerv1.ResolveExceptionResponse, error) {
	se, err := s.statements()
	if err != nil {
		return nil, err
	}
	k := req.GetStatement()
	if k.GetChannel() == "" || k.GetDate() == "" || k.GetTxn() == "" {
		return nil, toStatus(invalid("statement: channel, date and txn are required"))
	}
	if req.GetOrderId() != 0 || req.GetIndex() != 0 {
		return nil, toStatus(invalid("statement: order_id and index must be unset"))
	}
	how := payment.ResolveClose
	switch req.GetResolution() {
	case ledgerv1.Resolution_RESOLUTION_CLOSE:
	case ledgerv1.Resolution_RESOLUTION_REVERSE:
		how = payment.ResolveReverse
	case ledgerv1.Resolution_RESOLUTION_UNSPECIFIED:
		return nil, toStatus(invalid("resolution is required"))
	default:
		return nil, toStatus(invalid("resolution: a statement record is closed or reversed"))
	}
	res, r, err := se.ResolveStatement(k.GetChannel(), k.GetDate(), k.GetTxn(), how, req.GetNote())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &ledgerv1.ResolveExceptionResponse{Result: ledgerv1.PaymentResult(res)}
	if r != nil {
		resp.Statement = StatementExceptionToProto(r)
	}
	return resp, nil
}
