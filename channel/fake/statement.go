package fake

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// StatementHeader is the first line of every statement.
var StatementHeader = []string{"date", "txn", "op", "order_no", "original", "status", "amount", "currency", "completed_at"}

// StatementName is the file name of date's (YYYY-MM-DD) statement.
func StatementName(date string) string { return "statement-" + date + ".csv" }

// WriteStatement writes the statement of date (YYYY-MM-DD, UTC) into the statement dir,
// replacing any earlier one whole: StatementHeader, then one line per txn completed that
// day, by completion time then txn. It returns the file's path and the number of txns.
func (s *Server) WriteStatement(date string) (path string, lines int, err error) {
	if s.cfg.StatementDir == "" {
		return "", 0, errors.New("fake: statements are off (no statement dir)")
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return "", 0, fmt.Errorf("fake: statement date: %w", err)
	}
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	s.mu.Lock()
	txns := slices.Clone(s.book.byDate[date])
	delete(s.book.dirty, date)
	s.mu.Unlock()
	slices.SortStableFunc(txns, func(a, b txn) int {
		if c := a.completedAt.Compare(b.completedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	path = filepath.Join(s.cfg.StatementDir, StatementName(date))
	if err := writeCSV(path, date, txns); err != nil {
		s.mu.Lock()
		s.book.dirty[date] = true
		s.mu.Unlock()
		return "", 0, fmt.Errorf("fake: statement %s: %w", date, err)
	}
	s.log.Info("statement written", "path", path, "txns", len(txns))
	return path, len(txns), nil
}

// WriteStatements writes the statement of every date with txns booked since its last one;
// nothing when statements are off. It returns the paths written.
func (s *Server) WriteStatements() ([]string, error) {
	if s.cfg.StatementDir == "" {
		return nil, nil
	}
	s.mu.Lock()
	dates := slices.Sorted(maps.Keys(s.book.dirty))
	s.mu.Unlock()
	var paths []string
	var errs []error
	for _, d := range dates {
		p, _, err := s.WriteStatement(d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		paths = append(paths, p)
	}
	return paths, errors.Join(errs...)
}

// everyStatement writes the changed statements every StatementEvery until Close.
func (s *Server) everyStatement() {
	go func() {
		t := time.NewTicker(s.cfg.StatementEvery)
		defer t.Stop()
		for {
			select {
			case <-s.sched.ctx.Done():
				return
			case <-t.C:
				if _, err := s.WriteStatements(); err != nil {
					s.log.Error("writing statements", "err", err)
				}
			}
		}
	}()
}

// writeCSV writes a statement to a temporary file and renames it to path, so that a reader
// never sees half of one.
func writeCSV(path, date string, txns []txn) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".statement-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	w := csv.NewWriter(f)
	_ = w.Write(StatementHeader) // errors stay in w, reported by Error
	for _, t := range txns {
		_ = w.Write([]string{
			date, t.id, t.op.String(), t.orderNo, t.original, t.status.String(),
			strconv.FormatUint(t.amount, 10), t.currency, t.completedAt.Format(time.RFC3339Nano),
		})
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
