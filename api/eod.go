package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

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
	opts := eod.Options{Early: req.GetEarly()}
	if req.GetDate() == "" {
		rs, err := s.eod.RunDue(ctx, opts)
		if err != nil {
			return nil, eodStatus(ctx, err)
		}
		if len(rs) == 0 {
			st, err := s.eod.Status()
			if err != nil {
				return nil, toStatus(err)
			}
			return nil, status.Errorf(codes.FailedPrecondition, "no day is due: the current accounting day %v ends at %s UTC; ask for early to close it now",
				st.Day, eod.DayEnd(st.Day).Format(time.DateTime))
		}
		last := rs[len(rs)-1]
		var steps []string
		for _, r := range rs[:len(rs)-1] {
			steps = append(steps, fmt.Sprintf("%v: %v (%v)", r.Day, r.Outcome, r.Phase))
		}
		last.Steps = append(steps, last.Steps...)
		return eodResponse(&last, s.currencies)
	}
	day, err := ledger.ParseDay(req.GetDate())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	res, err := s.eod.Run(ctx, day, opts)
	if err != nil {
		return nil, eodStatus(ctx, err)
	}
	return eodResponse(&res, s.currencies)
}

// AcceptEndOfDay implements AdminService.
func (s *Service) AcceptEndOfDay(ctx context.Context, req *ledgerv1.AcceptEndOfDayRequest) (*ledgerv1.AcceptEndOfDayResponse, error) {
	if s.eod == nil {
		return nil, status.Error(codes.Unimplemented, "end of day is not configured")
	}
	day, err := ledger.ParseDay(req.GetDate())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	res, err := s.eod.Accept(ctx, day, req.GetNote())
	if err != nil {
		return nil, eodStatus(ctx, err)
	}
	out, err := eodResponse(&res, s.currencies)
	if err != nil {
		return nil, err
	}
	return &ledgerv1.AcceptEndOfDayResponse{Result: out}, nil
}

func eodStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, eod.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, eod.ErrPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, eod.ErrBusy):
		return status.Error(codes.Aborted, err.Error())
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	return toStatus(err)
}

func eodResponse(res *eod.Result, currencies accounting.Currencies) (*ledgerv1.RunEndOfDayResponse, error) {
	out := &ledgerv1.RunEndOfDayResponse{Date: res.Day.String(), Phase: res.Phase.String(), Outcome: res.Outcome.String(),
		Passed: res.Outcome == eod.OutcomeClosed || res.Outcome == eod.OutcomeTrialPassed, Steps: res.Steps, Stuck: res.Stuck,
		Archived: res.Archived(), Note: res.Note, Early: res.Early}
	if res.Superseded {
		out.Steps = append(out.Steps, fmt.Sprintf("the acceptance of %v (note %q) is superseded: its trial balance, checked again when it was to be archived, differed from the differences accepted (now: %v)",
			res.Day, res.Note, res.Outcome))
	}
	if res.Report != nil {
		out.Differences = res.Report.Differences
		var b bytes.Buffer
		if err := accounting.WriteDayTable(&b, res.Report, currencies); err != nil {
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
	for _, o := range st.Open {
		out.Open = append(out.Open, fmt.Sprintf("%v: %v, %v", o.Day, o.Phase, o.Outcome))
	}
	return out, nil
}
