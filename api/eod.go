package api

import (
	"bytes"
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/eod"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/accounting"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// WithEndOfDay serves RunEndOfDay and GetEndOfDayStatus with r (without it they answer
// UNIMPLEMENTED).
func WithEndOfDay(r *eod.Runner) Option { return func(s *Service) { s.eod = r } }

// RunEndOfDay implements AdminService.
func (s *Service) RunEndOfDay(ctx context.Context, req *ledgerv1.RunEndOfDayRequest) (*ledgerv1.RunEndOfDayResponse, error) {
	if s.eod == nil {
		return nil, status.Error(codes.Unimplemented, "end of day is not configured")
	}
	var day ledger.Day
	if req.GetDate() == "" {
		st, err := s.eod.Status()
		if err != nil {
			return nil, toStatus(err)
		}
		day = st.Day
	} else {
		var err error
		if day, err = ledger.ParseDay(req.GetDate()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	res, err := s.eod.Run(ctx, day)
	switch {
	case errors.Is(err, eod.ErrInvalid):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, eod.ErrPrecondition):
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, eod.ErrBusy):
		return nil, status.Error(codes.Aborted, err.Error())
	case err != nil && ctx.Err() != nil:
		return nil, status.FromContextError(ctx.Err()).Err()
	case err != nil:
		return nil, toStatus(err)
	}
	out := &ledgerv1.RunEndOfDayResponse{Date: res.Day.String(), Phase: res.Phase.String(), Outcome: res.Outcome.String(),
		Passed: res.Outcome == eod.OutcomeClosed, Steps: res.Steps, Stuck: res.Stuck}
	if res.Report != nil {
		out.Differences = res.Report.Differences
		var b bytes.Buffer
		if err := accounting.WriteDayTable(&b, res.Report); err != nil {
			return nil, toStatus(err)
		}
		out.Report = b.String()
	}
	return out, nil
}

// GetEndOfDayStatus implements AdminService.
func (s *Service) GetEndOfDayStatus(ctx context.Context, _ *ledgerv1.GetEndOfDayStatusRequest) (*ledgerv1.GetEndOfDayStatusResponse, error) {
	if s.eod == nil {
		return nil, status.Error(codes.Unimplemented, "end of day is not configured")
	}
	st, err := s.eod.Status()
	if err != nil {
		return nil, toStatus(err)
	}
	out := &ledgerv1.GetEndOfDayStatusResponse{CurrentDate: st.Day.String()}
	if st.Found {
		out.LastDate, out.LastPhase, out.LastOutcome = st.Last.Day.String(), st.Last.Phase.String(), st.Last.Outcome.String()
	}
	return out, nil
}
