package gateway

import (
	"context"
	"time"
)

// Clock is the gateway's time: the rate limiter, the queue wait, each call's timeout and
// latencies use it. Tests give a fake one; nil in Config means the machine's clock. The
// circuit breaker (gobreaker) keeps its own wall-clock time.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f in its own goroutine after d; stop cancels it if it has not run.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
	// WithTimeout is context.WithTimeout on this clock: the context ends after d with
	// context.Cause(ctx) == context.DeadlineExceeded.
	WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc)
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

func (systemClock) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d)
}
