package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// VerifyIntervalDefault is the least time between the starts of two Verify calls: a Verify
// reads the whole store (tens of seconds on a large one) and holds a snapshot while it does,
// so it is an operator's check, not something to poll.
const VerifyIntervalDefault = 10 * time.Second

// Refusals of Verify.
var (
	// ErrVerifyRunning: a Verify is running; one runs at a time (ABORTED, as a second backup).
	ErrVerifyRunning = errors.New("a Verify is running: one runs at a time")
	// ErrVerifyRate: a Verify started less than the interval ago (RESOURCE_EXHAUSTED, with the
	// wait in a RetryInfo detail).
	ErrVerifyRate = errors.New("rate-limited: Verify starts at most once per --verify-interval")
)

// verifyRateError is ErrVerifyRate with the wait until the next start is allowed.
type verifyRateError struct{ wait time.Duration }

func (e verifyRateError) Error() string {
	return fmt.Sprintf("%v: the next may start in %v", ErrVerifyRate, e.wait.Round(time.Millisecond))
}
func (e verifyRateError) Unwrap() error { return ErrVerifyRate }

// WithVerifyInterval sets the least time between the starts of two Verify calls (0: no
// limit but one at a time); the default is VerifyIntervalDefault.
func WithVerifyInterval(d time.Duration) Option {
	return func(s *Service) { s.verify = newVerifyGate(d, s.metrics) }
}

// verifyGate admits one Verify at a time, at most one start per interval.
type verifyGate struct {
	running sync.Mutex
	limit   *rate.Limiter // nil: no rate limit
	total   *prometheus.CounterVec
}

// Outcomes of Verify, counted in ledger_verify_total.
const (
	verifyClean    = "clean"
	verifyProblems = "problems"
	verifyFailed   = "failed"
	verifyRunning  = "refused_running"
	verifyRate     = "refused_rate"
)

func newVerifyGate(interval time.Duration, m *Metrics) *verifyGate {
	g := &verifyGate{total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_verify_total",
		Help: "AdminService.Verify calls by outcome: clean, problems (found some), failed (stopped by an error), refused_running (another was running) or refused_rate (sooner than --verify-interval after the last start)."},
		[]string{"outcome"})}
	for _, o := range []string{verifyClean, verifyProblems, verifyFailed, verifyRunning, verifyRate} {
		g.total.WithLabelValues(o)
	}
	if interval > 0 {
		g.limit = rate.NewLimiter(rate.Every(interval), 1)
	}
	if m != nil {
		if err := m.Registry.Register(g.total); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				panic(err)
			}
			g.total = already.ExistingCollector.(*prometheus.CounterVec) // a second WithVerifyInterval
		}
	}
	return g
}

// enter admits a Verify (release it with running.Unlock) or answers why not. A refused call
// uses up no start.
func (g *verifyGate) enter(now time.Time) error {
	if !g.running.TryLock() {
		g.total.WithLabelValues(verifyRunning).Inc()
		return ErrVerifyRunning
	}
	if g.limit != nil {
		r := g.limit.ReserveN(now, 1)
		if wait := r.DelayFrom(now); wait > 0 {
			r.CancelAt(now)
			g.running.Unlock()
			g.total.WithLabelValues(verifyRate).Inc()
			return verifyRateError{wait: wait}
		}
	}
	return nil
}

// Verify implements AdminService. It reads one durable snapshot of the whole store
// (storage.Verify), with iterators renewed every storage.SnapshotIterKeysMaxDefault keys so
// that no table stays pinned on disk for the whole scan.
func (s *Service) Verify(_ context.Context, _ *ledgerv1.VerifyRequest) (*ledgerv1.VerifyResponse, error) {
	if err := s.verify.enter(time.Now()); err != nil {
		return nil, toStatus(err)
	}
	defer s.verify.running.Unlock()
	var rep storage.Report
	err := s.ledger.Read(func(v *storage.Reader) (err error) {
		rep, err = storage.Verify(v, s.ledger.Shards())
		return err
	})
	if err != nil {
		s.verify.total.WithLabelValues(verifyFailed).Inc()
		return nil, toStatus(err)
	}
	if len(rep.Problems) > 0 {
		s.verify.total.WithLabelValues(verifyProblems).Inc()
		slog.Error("verify found problems", "count", len(rep.Problems), "first", rep.Problems[0])
	} else {
		s.verify.total.WithLabelValues(verifyClean).Inc()
	}
	return &ledgerv1.VerifyResponse{Problems: rep.Problems, Accounts: rep.Accounts, Postings: rep.Postings,
		OutboxLegs: rep.OutboxLegs}, nil
}
