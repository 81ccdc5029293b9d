package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
	"github.com/ledgercore/ledger/storage"
)

// Errors of backups.
var (
	// ErrBackupsOff: the server has no backup root.
	ErrBackupsOff = errors.New("backups are off: ledgerd has no --backup-root")
	// ErrBackupRunning: another backup is being written.
	ErrBackupRunning = errors.New("a backup is running")
)

// backups writes the store's backups under a root, one at a time.
type backups struct {
	root    string // absolute; "": off
	running sync.Mutex
	metrics *backupMetrics
}

// WithBackups serves AdminService.Backup into directories under root (made when missing);
// "" leaves backups off. The backup metrics go into reg (nil: not registered).
func WithBackups(root string, reg prometheus.Registerer) Option {
	return func(s *Service) {
		if root == "" {
			return
		}
		abs, err := filepath.Abs(root)
		if err != nil {
			abs = root // Abs fails only without a working directory; Backup then refuses a relative root
		}
		s.backups = &backups{root: abs, metrics: newBackupMetrics(reg)}
	}
}

type backupMetrics struct {
	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	seconds     prometheus.Gauge
	bytes       prometheus.Gauge
}

func newBackupMetrics(reg prometheus.Registerer) *backupMetrics {
	m := &backupMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ledger_backups_total",
			Help: "Backups (AdminService.Backup) by outcome: ok, failed, or problems (written, and its verification found differences)."}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_success_timestamp_seconds",
			Help: "When the last backup that succeeded finished (Unix seconds); 0: none since the start."}),
		seconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_duration_seconds",
			Help: "How long the last backup that succeeded took to write (its verification not included)."}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_bytes",
			Help: "The size of the last backup that succeeded (hard-linked tables count in full)."}),
	}
	for _, o := range []string{"ok", "failed", "problems"} {
		m.total.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.total, m.lastSuccess, m.seconds, m.bytes)
	}
	return m
}

// Backup implements AdminService.
func (s *Service) Backup(_ context.Context, req *ledgerv1.BackupRequest) (*ledgerv1.BackupResponse, error) {
	b := s.backups
	if b == nil {
		return nil, toStatus(ErrBackupsOff)
	}
	name := req.GetName()
	if name == "" || !filepath.IsLocal(name) {
		return nil, toStatus(invalid("name %q: want a relative path inside the backup root %s (no \"..\")", name, b.root))
	}
	if !filepath.IsAbs(b.root) {
		return nil, toStatus(fmt.Errorf("%w: the backup root %q is not absolute", ErrBackupsOff, b.root))
	}
	if !b.running.TryLock() {
		return nil, toStatus(ErrBackupRunning)
	}
	defer b.running.Unlock()
	path := filepath.Join(b.root, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		b.metrics.total.WithLabelValues("failed").Inc()
		return nil, toStatus(fmt.Errorf("backup: %w", err))
	}
	start := time.Now()
	info, err := s.ledger.Backup(path)
	took := time.Since(start)
	if err != nil {
		if !errors.Is(err, storage.ErrBackupExists) {
			b.metrics.total.WithLabelValues("failed").Inc()
			slog.Error("backup failed", "path", path, "err", err)
		}
		return nil, toStatus(err)
	}
	resp := &ledgerv1.BackupResponse{Path: path, Files: uint32(info.Files), Bytes: uint64(info.Bytes), Millis: uint64(took.Milliseconds())}
	slog.Info("backup written", "path", path, "files", info.Files, "bytes", info.Bytes, "took", took)
	outcome := "ok"
	if req.GetVerify() {
		rep, err := storage.VerifyDir(path)
		if err != nil {
			b.metrics.total.WithLabelValues("failed").Inc()
			slog.Error("backup written, but it could not be verified", "path", path, "err", err)
			return nil, toStatus(fmt.Errorf("backup %s written, but it could not be verified: %w", path, err))
		}
		resp.Verified, resp.Problems = true, rep.Problems
		if len(rep.Problems) > 0 {
			outcome = "problems"
			slog.Error("backup verified with problems", "path", path, "count", len(rep.Problems), "first", rep.Problems[0])
		}
	}
	b.metrics.total.WithLabelValues(outcome).Inc()
	if outcome == "ok" {
		b.metrics.lastSuccess.Set(float64(time.Now().Unix()))
		b.metrics.seconds.Set(took.Seconds())
		b.metrics.bytes.Set(float64(info.Bytes))
	}
	return resp, nil
}
