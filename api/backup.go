package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
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

// Limits of backups.
const (
	// BackupProblemsMax is the most problems a verified backup's answer lists.
	BackupProblemsMax = 1000
)

// backupName is what a backup's name may be: one path element, never hidden (a partial
// backup's directory is), never "." or "..".
var backupName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// backups writes the store's backups under a root, one at a time.
type backups struct {
	root     string // absolute; "": off
	storeDir string // the live store's directory: root and it must not overlap
	running  sync.Mutex
	metrics  *backupMetrics
}

// WithBackups serves AdminService.Backup into directories under root (made when missing) of
// the store in storeDir; "" leaves backups off. The backup metrics go into reg (nil: not
// registered); the time of the last backup that succeeded is read from the newest complete
// backup under root, so that a restart does not reset it.
func WithBackups(root, storeDir string, reg prometheus.Registerer) Option {
	return func(s *Service) {
		if root == "" {
			return
		}
		b := &backups{root: root, storeDir: storeDir, metrics: newBackupMetrics(reg)}
		if abs, err := filepath.Abs(root); err == nil {
			b.root = abs
		}
		if abs, err := filepath.Abs(storeDir); err == nil {
			b.storeDir = abs
		}
		if last := newestBackup(b.root); !last.IsZero() {
			b.metrics.lastSuccess.Set(float64(last.Unix()))
		}
		s.backups = b
	}
}

// newestBackup is the completion time of the newest complete backup under root (zero: none).
func newestBackup(root string) time.Time {
	var newest time.Time
	ents, _ := os.ReadDir(root) // none yet: zero
	for _, e := range ents {
		if t, ok := storage.BackupCompleted(filepath.Join(root, e.Name())); ok && e.IsDir() && t.After(newest) {
			newest = t
		}
	}
	return newest
}

// overlap reports whether the root and the store's directory are one inside the other (or
// the same), symbolic links resolved as far as the paths exist.
func (b *backups) overlap() bool { return BackupOverlaps(b.root, b.storeDir) }

// BackupOverlaps reports whether a backup root and a store's directory are the same or one
// inside the other, symbolic links resolved as far as the paths exist: a backup must not be
// inside the store it copies, nor a store among the backups (ledgerd refuses it at start, and
// Backup again at each call).
func BackupOverlaps(root, storeDir string) bool {
	root, store := resolve(root), resolve(storeDir)
	inside := func(a, b string) bool { rel, err := filepath.Rel(b, a); return err == nil && filepath.IsLocal(rel) }
	return root == store || inside(root, store) || inside(store, root)
}

// resolve is path with the symbolic links of its longest existing prefix resolved.
func resolve(path string) string {
	var rest []string
	for p := path; ; p = filepath.Dir(p) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		if filepath.Dir(p) == p {
			return path
		}
		rest = append([]string{filepath.Base(p)}, rest...)
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
			Help: "Backups (AdminService.Backup) by outcome: ok; problems (written, and its verification found differences); unverified (written, and its verification could not run); failed (not written)."}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_success_timestamp_seconds",
			Help: "When the newest complete backup under --backup-root was completed (Unix seconds; read from its marker at start); 0: none."}),
		seconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_duration_seconds",
			Help: "How long the last backup that succeeded took to write (its verification not included)."}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "ledger_backup_last_bytes",
			Help: "The size of the last backup that succeeded (hard-linked tables count in full)."}),
	}
	for _, o := range []string{"ok", "problems", "unverified", "failed"} {
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
	if !backupName.MatchString(name) {
		return nil, toStatus(invalid("name %q: want 1 to 128 of A-Z a-z 0-9 . _ - starting with a letter or digit (a directory in the backup root %s)", name, b.root))
	}
	if !filepath.IsAbs(b.root) {
		return nil, toStatus(fmt.Errorf("%w: the backup root %q is not absolute", ErrBackupsOff, b.root))
	}
	if b.overlap() {
		return nil, toStatus(fmt.Errorf("%w: the backup root %s and the store %s are one inside the other", ErrBackupsOff, b.root, b.storeDir))
	}
	if !b.running.TryLock() {
		return nil, toStatus(ErrBackupRunning)
	}
	defer b.running.Unlock()
	path := filepath.Join(b.root, name)
	if err := os.MkdirAll(b.root, 0o750); err != nil {
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
	b.metrics.lastSuccess.Set(float64(info.Completed.Unix()))
	b.metrics.seconds.Set(took.Seconds())
	b.metrics.bytes.Set(float64(info.Bytes))
	outcome := "ok"
	if req.GetVerify() {
		rep, err := storage.VerifyDir(path)
		switch {
		case err != nil:
			outcome, resp.VerifyError = "unverified", err.Error()
			slog.Error("backup written, but it could not be verified", "path", path, "err", err)
		case len(rep.Problems) > 0:
			outcome = "problems"
			resp.Verified, resp.ProblemCount = true, uint32(len(rep.Problems))
			resp.Problems = rep.Problems[:min(len(rep.Problems), BackupProblemsMax)]
			slog.Error("backup verified with problems", "path", path, "count", len(rep.Problems), "first", rep.Problems[0])
		default:
			resp.Verified = true
		}
	}
	b.metrics.total.WithLabelValues(outcome).Inc()
	return resp, nil
}
