package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgercore/ledger/actors/payments"
	"github.com/ledgercore/ledger/api"
	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger/payment"
	"github.com/ledgercore/ledger/ledger/recon"
	"github.com/ledgercore/ledger/nrtrecon"
	"github.com/ledgercore/ledger/storage"
)

// reconFlags configure near-real-time reconciliation (README, "Near-real-time reconciliation").
type reconFlags struct {
	follow        bool
	window, grace time.Duration
	bizMax        int
	holdMax       uint64
}

func (r *reconFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&r.follow, "recon-follow", false, "reconcile the event stream near real time: join by biz id within --recon-window and record what is unmatched as findings")
	fs.DurationVar(&r.window, "recon-window", time.Duration(recon.WindowDefault), "the reconciliation window, on event time, from a biz id's first event (1s to 24h)")
	fs.IntVar(&r.bizMax, "recon-biz-max", recon.BizMaxDefault, "the most biz ids reconciled at once; beyond it the oldest window is reported as an overflow finding")
	fs.Uint64Var(&r.holdMax, "recon-hold-max", nrtrecon.HoldMaxDefault, "the most durable events past its checkpoint the reconciliation keeps from retention; beyond it the hold is released (logged at ERROR, ledger_recon_hold_released_total) and retention may trim what it has not reconciled")
	fs.DurationVar(&r.grace, "recon-grace", nrtrecon.GraceDefault, "how long past a window's end an idle stream waits before the wall clock closes it (1s to 1h)")
}

func (r *reconFlags) check() error {
	if !r.follow {
		return nil
	}
	c := recon.Config{Window: uint64(r.window), BizMax: r.bizMax}
	if r.window <= 0 || r.bizMax <= 0 {
		return fmt.Errorf("--recon-window and --recon-biz-max must be positive")
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("--recon-window or --recon-biz-max: %w", err)
	}
	if r.holdMax == 0 {
		return fmt.Errorf("--recon-hold-max must be positive")
	}
	if r.grace < time.Second || r.grace > time.Hour {
		return fmt.Errorf("--recon-grace must be 1s to 1h, not %v", r.grace)
	}
	return nil
}

type reconRunner struct{ r *nrtrecon.Runner }

func (r reconRunner) stop() {
	if r.r != nil {
		r.r.Stop()
	}
}

// startRecon starts near-real-time reconciliation when --recon-follow is given, and exports its
// figures.
func startRecon(f reconFlags, seq *events.Sequencer, store *storage.Store, pl *paymentLayer, m *api.Metrics) (reconRunner, error) {
	if !f.follow {
		return reconRunner{}, nil
	}
	r, err := nrtrecon.Start(nrtrecon.Config{Seq: seq, Store: store, Setup: pl.setup,
		Matcher: recon.Config{Window: uint64(f.window), BizMax: f.bizMax}, Grace: f.grace, HoldMax: f.holdMax, Logger: slog.Default(),
		Confirm: func(biz string) ([]payment.Difference, error) {
			rec, err := pl.engine.Reconcile(biz)
			if errors.Is(err, payments.ErrReconcileTooLarge) {
				err = fmt.Errorf("%w: %w", nrtrecon.ErrUnverifiable, err)
			}
			return rec.Differences, err
		}})
	if err != nil {
		return reconRunner{}, err
	}
	registerReconMetrics(m.Registry, r)
	return reconRunner{r: r}, nil
}

func registerReconMetrics(reg *prometheus.Registry, r *nrtrecon.Runner) {
	counter := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v)
	}
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	reg.MustRegister(
		counter("ledger_recon_matched_total", "Biz id windows that closed matched (every order final, the three-way check clean, no exception opened).",
			func() float64 { return float64(r.Stats.Matched.Load()) }),
		counter("ledger_recon_findings_recorded_total", "Findings new to the store (a finding recorded again after a restart is not counted).",
			func() float64 { return float64(r.Stats.Recorded.Load()) }),
		gauge("ledger_recon_pending", "Biz id windows extended because an order was not final when they first closed.",
			func() float64 { return float64(r.Stats.Pending.Load()) }),
		gauge("ledger_recon_tracked", "Biz ids with an open window (at most --recon-biz-max), or closed and waiting for the store's check.",
			func() float64 { return float64(r.Stats.Tracked.Load()) }),
		gauge("ledger_recon_kept", "Orders and transfers kept across the open windows (at most 1,000,000).",
			func() float64 { return float64(r.Stats.Kept.Load()) }),
		counter("ledger_recon_ignored_total", "Plain ledger transfers with a biz id and no payment window open (not reconciled).",
			func() float64 { return float64(r.Stats.Ignored.Load()) }),
		counter("ledger_recon_plain_dropped_total", "Plain ledger transfers a payment window did not track past its bound of 256 (the window's three-way verdict left to the store).",
			func() float64 { return float64(r.Stats.PlainDropped.Load()) }),
		counter("ledger_recon_hold_released_total", "Times the reconciliation released its retention hold, more than --recon-hold-max events behind (retention may trim what it has not reconciled).",
			func() float64 { return float64(r.Stats.HoldReleased.Load()) }),
		counter("ledger_recon_settled_total", "Pending or not_final findings resolved because a later window of the biz id matched.",
			func() float64 { return float64(r.Stats.Settled.Load()) }),
		counter("ledger_recon_confirm_retries_total", "Store checks of partial windows that failed (retried with backoff for a minute, then an unverifiable finding).",
			func() float64 { return float64(r.Stats.ConfirmRetries.Load()) }),
		gauge("ledger_recon_lag_events", "Durable events the reconciliation has not read yet.",
			func() float64 { return float64(r.Lag()) }),
		gauge("ledger_recon_checkpoint_sequence", "The last sequence reconciled in full (durable).",
			func() float64 { return float64(r.Stats.Checkpoint.Load()) }),
		counter("ledger_recon_window_overflow_total", "Windows overflowed unreconciled by --recon-biz-max or the bounds on what windows keep (each also one overflow finding).",
			func() float64 { return float64(r.Stats.Overflow.Load()) }),
		counter("ledger_recon_trimmed_total", "Gaps: events trimmed by retention before reconciliation read them (the open windows were made partial; it went on from the oldest event kept).",
			func() float64 { return float64(r.Stats.Trimmed.Load()) }),
		counter("ledger_recon_errors_total", "Follow, confirmation or commit errors (each retried).",
			func() float64 { return float64(r.Stats.Errors.Load()) }),
	)
	for i, k := range recon.Kinds {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_recon_unmatched_total",
			Help: "Findings when windows closed, by kind (pending: an order still waiting on its channel, not an anomaly).", ConstLabels: prometheus.Labels{"kind": string(k)}},
			func() float64 { return float64(r.Stats.Unmatched[i].Load()) }))
	}
}
