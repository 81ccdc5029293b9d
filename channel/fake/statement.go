package fake

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// StatementHeader is the first line of every statement.
var StatementHeader = []string{"date", "txn", "op", "order_no", "original", "status", "amount", "currency", "completed_at"}

// StatementName is the file name of date's (YYYY-MM-DD) statement.
func StatementName(date string) string { return "statement-" + date + ".csv" }

// SignatureName is the file beside a statement that holds its signature
// (channel.SignStatement: hex HMAC-SHA256 of the file's exact bytes under the secret).
func SignatureName(date string) string { return StatementName(date) + ".sig" }

// Statement renders the statement of date (YYYY-MM-DD, UTC) as it stands: StatementHeader,
// then one line per txn completed that day, by completion time then txn; and its signature.
func (s *Server) Statement(date string) (body []byte, sig string, lines int, err error) {
	if d, err := time.Parse(time.DateOnly, date); err != nil || d.Format(time.DateOnly) != date {
		return nil, "", 0, fmt.Errorf("fake: statement date %q is not YYYY-MM-DD", date)
	}
	s.mu.Lock()
	txns := slices.Clone(s.book.byDate[date])
	s.mu.Unlock()
	body, err = renderCSV(date, txns)
	if err != nil {
		return nil, "", 0, err
	}
	return body, channel.SignStatement(s.cfg.Secret, body), len(txns), nil
}

// handleStatementGet serves GET StatementsPath/{date}: the statement's bytes, signed in
// channel.SignatureHeader.
func (s *Server) handleStatementGet(w http.ResponseWriter, r *http.Request) {
	body, sig, _, err := s.Statement(r.PathValue("date"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv")
	w.Header().Set(channel.SignatureHeader, sig)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // the client may be gone; nothing to do about it
}

// WriteStatement writes the statement of date (YYYY-MM-DD, UTC) into the statement dir,
// replacing any earlier one whole (see Statement), with its signature beside it
// (SignatureName). It returns the file's path and the number of txns.
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
	path = filepath.Join(s.cfg.StatementDir, StatementName(date))
	if err := writeCSV(path, date, txns, s.cfg.Secret); err != nil {
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

// renderCSV is a statement's bytes: its txns by completion time, then txn.
func renderCSV(date string, txns []txn) ([]byte, error) {
	slices.SortStableFunc(txns, func(a, b txn) int {
		if c := a.completedAt.Compare(b.completedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(StatementHeader) // errors stay in w, reported by Error
	for _, t := range txns {
		_ = w.Write([]string{
			date, t.id, t.op.String(), t.orderNo, t.original, t.status.String(),
			strconv.FormatUint(t.amount, 10), t.currency, t.completedAt.Format(time.RFC3339Nano),
		})
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// writeCSV writes a statement and its signature each to a temporary file and renames them
// into place (the signature first), so that a reader never sees half of one.
func writeCSV(path, date string, txns []txn, secret []byte) error {
	body, err := renderCSV(date, txns)
	if err != nil {
		return err
	}
	if err := writeWhole(path+".sig", []byte(channel.SignStatement(secret, body)+"\n")); err != nil {
		return err
	}
	return writeWhole(path, body)
}

func writeWhole(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".statement-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	_, err = f.Write(data)
	if err := errors.Join(err, f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
