package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ledgercore/ledger/actors"
	"github.com/ledgercore/ledger/storage"
)

// OverloadedRetryDelay is the wait the overload refusal suggests before a retry: about one
// commit round of a full shard (a guess, not a measurement); clients back off from there.
const OverloadedRetryDelay = 10 * time.Millisecond

// errInvalid marks a request that is malformed as a whole.
var errInvalid = errors.New("invalid request")

// codeOf maps an error to its gRPC code: the one table of error categories.
func codeOf(err error) codes.Code {
	switch {
	case err == nil:
		return codes.OK
	case errors.Is(err, errInvalid):
		return codes.InvalidArgument
	case errors.Is(err, actors.ErrOverloaded):
		return codes.ResourceExhausted
	case errors.Is(err, actors.ErrStopped):
		return codes.Unavailable
	case errors.Is(err, ErrUnknownChannel):
		return codes.NotFound
	case errors.Is(err, ErrReconcileTooLarge):
		return codes.FailedPrecondition
	case errors.Is(err, ErrStatementUnavailable):
		return codes.Unavailable
	case errors.Is(err, storage.ErrReconFindingNotFound):
		return codes.NotFound
	case errors.Is(err, storage.ErrReconFindingResolved):
		return codes.FailedPrecondition
	case errors.Is(err, ErrBackupsOff):
		return codes.FailedPrecondition
	case errors.Is(err, ErrBackupRunning), errors.Is(err, ErrVerifyRunning):
		return codes.Aborted
	case errors.Is(err, ErrVerifyRate):
		return codes.ResourceExhausted
	case errors.Is(err, storage.ErrBackupExists):
		return codes.AlreadyExists
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	}
	return codes.Internal
}

// toStatus is the status a handler returns for err: its code from codeOf and, for the overload
// refusal, a RetryInfo detail. The detail is what tells a client that RESOURCE_EXHAUSTED may be
// retried: gRPC answers the same code for a message over a size limit, which would fail again.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	s := status.New(codeOf(err), err.Error())
	var rateErr verifyRateError
	switch {
	case errors.Is(err, actors.ErrOverloaded):
		s = withRetryDelay(s, OverloadedRetryDelay)
	case errors.As(err, &rateErr):
		s = withRetryDelay(s, rateErr.wait)
	}
	return s.Err()
}

func withRetryDelay(s *status.Status, delay time.Duration) *status.Status {
	detailed, err := s.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	if err != nil {
		panic(fmt.Sprintf("api: RetryInfo detail: %v", err)) // only an OK status refuses details
	}
	return detailed
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}
