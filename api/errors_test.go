package api

import (
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/actors"
)

func retryInfoOf(err error) *errdetails.RetryInfo {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok {
			return info
		}
	}
	return nil
}

// TestOverloadCarriesRetryInfo: the overload refusal, alone or wrapped, is RESOURCE_EXHAUSTED
// with a RetryInfo detail (the client's sign that a retry may succeed); other errors carry none.
func TestOverloadCarriesRetryInfo(t *testing.T) {
	for _, err := range []error{actors.ErrOverloaded, fmt.Errorf("shard 1: %w", actors.ErrOverloaded)} {
		s := toStatus(err)
		if code := status.Code(s); code != codes.ResourceExhausted {
			t.Errorf("%v: code %v, want RESOURCE_EXHAUSTED", err, code)
		}
		info := retryInfoOf(s)
		if info == nil {
			t.Errorf("%v: no RetryInfo detail", err)
			continue
		}
		if delay := info.GetRetryDelay().AsDuration(); delay != OverloadedRetryDelay {
			t.Errorf("%v: retry delay %v, want %v", err, delay, OverloadedRetryDelay)
		}
	}
	for _, err := range []error{invalid("no transfers"), actors.ErrStopped, fmt.Errorf("disk on fire")} {
		if info := retryInfoOf(toStatus(err)); info != nil {
			t.Errorf("%v: RetryInfo %v, want none", err, info)
		}
	}
}
