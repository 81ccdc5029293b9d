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
// (channel.SignStatement: hex HMAC-SHA256 of the statement domain, its date and the file's
// exact bytes under the secret).
func SignatureName(date string) string { return StatementName(date) + ".sig" }

// ErrNotFinal: the day has not ended on the channel's clock, so it has no statement yet (a
// statement is final: the channel signs only a whole day).
var ErrNotFinal = errors.New("fake: the day has not ended: no statement yet")

// final checks that date (YYYY-MM-DD) has ended on the channel's clock.
func (s *Server) final(date string) error {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil || d.Format(time.DateOnly) != date {
		return fmt.Errorf("fake: statement date %q is not YYYY-MM-DD", date)
	}
	if now := s.cfg.Now(); now.Before(d.Add(24 * time.Hour)) {
		return fmt.Errorf("%w: %s (it is %s)", ErrNotFinal, date, now.UTC().Format(time.RFC3339))
	}
	return nil
}

// Statement renders the statement of date (YYYY-MM-DD, UTC), a day that has ended on the
// channel's clock (else ErrNotFinal: the channel signs only a whole day): StatementHeader,
// then one line per txn completed that day, by completion time then txn; and its signature.
func (s *Server) Statement(date string) (body []byte, sig string, lines int, err error) {
	if err := s.final(date); err != nil {
		return nil, "", 0, err
	}
	return s.render(date, true)
}

// render is the statement of date as it stands, signed when sign is set.
func (s *Server) render(date string, sign bool) (body []byte, sig string, lines int, err error) {
	s.mu.Lock()
	txns := slices.Clone(s.book.byDate[date])
	s.mu.Unlock()
	body, err = renderCSV(date, txns)
	if err != nil {
		return nil, "", 0, err
	}
	if sign {
		sig = channel.SignStatement(s.cfg.Secret, date, body)
	}
	return body, sig, len(txns), nil
}

// handleStatementGet serves GET StatementsPath/{date}: the statement's bytes, signed in
// channel.SignatureHeader.
func (s *Server) handleStatementGet(w http.ResponseWriter, r *http.Request) {
	body, sig, _, err := s.Statement(r.PathValue("date"))
	if errors.Is(err, ErrNotFinal) {
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/csv")
	w.Header().Set(channel.SignatureHeader, sig)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // the client may be gone; nothing to do about it
}

// WriteStatement writes the statement of date (YYYY-MM-DD, UTC) into the statement dir as it
// stands, replacing any earlier one whole, and, once the day has ended on the channel's
// clock, its signature beside it (SignatureName); a day not ended has no signature file (the
// channel signs only a whole day). It returns the file's path and the number of txns.
func (s *Server) WriteStatement(date string) (path string, lines int, err error) {
	if s.cfg.StatementDir == "" {
		return "", 0, errors.New("fake: statements are off (no statement dir)")
	}
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		return "", 0, fmt.Errorf("fake: statement date: %w", err)
	}
	final := s.final(date) == nil
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	s.mu.Lock()
	txns := slices.Clone(s.book.byDate[date])
	if final {
		delete(s.book.dirty, date) // a day not ended is written again once it has, signed
	}
	s.mu.Unlock()
	path = filepath.Join(s.cfg.StatementDir, StatementName(date))
	if err := writeCSV(path, date, txns, s.cfg.Secret, final); err != nil {
		s.mu.Lock()
		s.book.dirty[date] = true
		s.mu.Unlock()
		return "", 0, fmt.Errorf("fake: statement %s: %w", date, err)
	}
	s.log.Info("statement written", "path", path, "txns", len(txns))
	return path, len(txns), nil
}

// WriteStatements writes the statement of every date with txns booked since its last one
// (WriteStatement); nothing when statements are off. It returns the paths written.
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

// renderCSV is a statement's bytes: its txns by completion time, then txn, as the statement
// faults misreport them.
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
		status, amount := t.status, t.shown
		switch t.fault {
		case FaultDrop:
			continue
		case FaultStatus:
			status, amount = channel.Failed, 0
		}
		_ = w.Write([]string{
			date, t.id, t.op.String(), t.orderNo, t.original, status.String(),
			strconv.FormatUint(amount, 10), t.currency, t.completedAt.Format(time.RFC3339Nano),
		})
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// writeCSV writes a statement and (when signed) its signature each to a temporary file and
// renames them into place (the signature first), so that a reader never sees half of one; an
// unsigned one removes any signature beside it first.
func writeCSV(path, date string, txns []txn, secret []byte, signed bool) error {
	body, err := renderCSV(date, txns)
	if err != nil {
		return err
	}
	if !signed {
		if err := os.Remove(path + ".sig"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	} else if err := writeWhole(path+".sig", []byte(channel.SignStatement(secret, date, body)+"\n")); err != nil {
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

// A Fault is a statement fault the channel made (Config.StatementDropRate and the rest).
type Fault struct {
	Date    string // the statement's (YYYY-MM-DD)
	Kind    StatementFault
	Txn     string // the txn misreported, or (FaultLong) the line invented
	OrderNo string
	Op      channel.Op
	Amount  uint64 // what the txn moved (FaultLong: what the line says)
	Shown   uint64 // FaultAmount: what its line says
}

// StatementFaults lists the statement faults of date (YYYY-MM-DD, UTC) by txn: what a
// reconciliation of its statement should find, and nothing else.
func (s *Server) StatementFaults(date string) []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Fault
	for _, t := range s.book.byDate[date] {
		if t.fault != FaultNone {
			out = append(out, Fault{Date: date, Kind: t.fault, Txn: t.id, OrderNo: t.orderNo, Op: t.op, Amount: t.amount, Shown: t.shown})
		}
	}
	slices.SortFunc(out, func(a, b Fault) int { return cmp.Compare(a.Txn, b.Txn) })
	return out
}
