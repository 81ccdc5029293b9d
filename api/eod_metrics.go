package api

import (
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ledgercore/ledger/eod"
)

// WatchEndOfDay exports the end-of-day runner's counters and gauges, read at scrape time.
func (m *Metrics) WatchEndOfDay(r *eod.Runner) {
	m.Registry.MustRegister(&eodCollector{r: r})
}

var (
	descEODRuns = prometheus.NewDesc("ledger_eod_runs_total",
		"End-of-day runs that ran a phase (a closed day answered from its record is not counted).", nil, nil)
	descEODOutcomes = prometheus.NewDesc("ledger_eod_outcomes_total",
		"End-of-day runs by outcome: closed, trial_failed, drain_timeout.", []string{"outcome"}, nil)
	descEODFailed = prometheus.NewDesc("ledger_eod_last_failure",
		"1 when a day switched away from is not archived and its last trial balance failed, its drain timed out or its recomputation was interrupted (from the stored records): alert on it.", nil, nil)
	descEODDaysOpen = prometheus.NewDesc("ledger_eod_days_open",
		"Accounting days switched away from and not archived (from the stored records): alert when it stays above 1.", nil, nil)
	descEODTrialFailed = prometheus.NewDesc("ledger_eod_trial_balance_failed",
		"1 when the trial balance of a day not archived fails for the ledger, per ledger (from the stored records).", []string{"ledger"}, nil)
	descEODLastClosed = prometheus.NewDesc("ledger_eod_last_closed_day",
		"The latest accounting day archived, as yyyymmdd (0: none).", nil, nil)
	descEODSeconds = prometheus.NewDesc("ledger_eod_last_run_seconds",
		"How long the last end-of-day run took.", nil, nil)
	descEODScheduleErrors = prometheus.NewDesc("ledger_eod_schedule_errors_total",
		"Scheduled end-of-day runs (--eod-at) that failed; each is retried with backoff.", nil, nil)
	descEODDueDays = prometheus.NewDesc("ledger_eod_due_days",
		"Accounting days whose calendar end (UTC) has passed and that are not switched away from: alert when above 0 for long.", nil, nil)
)

type eodCollector struct{ r *eod.Runner }

func (c *eodCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEODRuns, descEODOutcomes, descEODFailed, descEODDaysOpen, descEODTrialFailed, descEODLastClosed, descEODSeconds,
		descEODScheduleErrors, descEODDueDays} {
		ch <- d
	}
}

func (c *eodCollector) Collect(ch chan<- prometheus.Metric) {
	s := &c.r.Stats
	ch <- prometheus.MustNewConstMetric(descEODRuns, prometheus.CounterValue, float64(s.Runs.Load()))
	ch <- prometheus.MustNewConstMetric(descEODOutcomes, prometheus.CounterValue, float64(s.Closed.Load()), "closed")
	ch <- prometheus.MustNewConstMetric(descEODOutcomes, prometheus.CounterValue, float64(s.TrialFailures.Load()), "trial_failed")
	ch <- prometheus.MustNewConstMetric(descEODOutcomes, prometheus.CounterValue, float64(s.DrainTimeouts.Load()), "drain_timeout")
	failed := 0.0
	if s.LastFailed.Load() {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(descEODFailed, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(descEODDaysOpen, prometheus.GaugeValue, float64(s.DaysOpen.Load()))
	s.FailedLedgers.Range(func(k, v any) bool {
		f := 0.0
		if v.(bool) {
			f = 1
		}
		ch <- prometheus.MustNewConstMetric(descEODTrialFailed, prometheus.GaugeValue, f, strconv.FormatUint(uint64(k.(uint32)), 10))
		return true
	})
	ch <- prometheus.MustNewConstMetric(descEODLastClosed, prometheus.GaugeValue, float64(s.LastClosedDay.Load()))
	ch <- prometheus.MustNewConstMetric(descEODSeconds, prometheus.GaugeValue, math.Float64frombits(s.LastRunSeconds.Load()))
	ch <- prometheus.MustNewConstMetric(descEODScheduleErrors, prometheus.CounterValue, float64(s.ScheduleErrors.Load()))
	ch <- prometheus.MustNewConstMetric(descEODDueDays, prometheus.GaugeValue, float64(c.r.DueDays()))
}
