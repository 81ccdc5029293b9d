// Package fake is a simulated payment channel: a real HTTP server speaking the channel
// protocol (channel/PROTOCOL.md), with configurable latency, failures, lost answers,
// duplicate and late notices, duplicate payments, amount mismatches, and daily statements.
// Every random choice about a request is drawn from (Config.Seed, its order_no), so a run
// can be repeated. cmd/fakechannel serves one; a test or ledgerd can start one in-process:
//
//	srv, err := fake.Start("127.0.0.1:0", fake.Config{Secret: secret, Seed: 1})
//	client := channel.NewHTTPClient(srv.URL(), notifyURL, nil)
//	defer srv.Close(ctx)
//
// or mount New's Server (an http.Handler) on a server of its own.
package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ledgercore/ledger/channel"
)

// StatementsPath takes POST StatementsPath/{YYYY-MM-DD}: write that day's statement.
const StatementsPath = "/v1/statements"

// record is one request and what became of it.
type record struct {
	req       channel.Request
	notifyURL string
	fate      fate
	result    channel.Result
	collected uint64 // Pay: the sum of its succeeded txns
	refunded  uint64 // Pay: the sum of its succeeded refunds
	dupTxn    string // Pay: the txn of its second collection, if any
}

// Server is a simulated channel. It is an http.Handler; Start also serves it.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux

	mu      sync.Mutex
	records map[string]*record // by order_no
	book    book
	shared  map[string]string // notify URLs and currencies, one copy each (at most sharedMax)
	full    bool              // records reached MaxRecords (logged once: the book never shrinks)

	sched     scheduler
	callbacks chan struct{} // a slot per notice waiting, MaxPendingCallbacks of them
	posting   chan struct{} // a slot per post being made, CallbackConcurrency of them
	out       outbox        // notices due, posted many at a time (NoticeBatch > 1)
	held      chan struct{} // closed by Close: held answers go out
	closeOnce sync.Once
	stmtMu    sync.Mutex // one statement written at a time

	hs *http.Server // Start's
	ln net.Listener
}

// New returns a simulated channel per cfg.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		records:   make(map[string]*record),
		shared:    make(map[string]string),
		book:      newBook(),
		callbacks: make(chan struct{}, cfg.MaxPendingCallbacks),
		posting:   make(chan struct{}, cfg.CallbackConcurrency),
		held:      make(chan struct{}),
		out:       outbox{byURL: make(map[string][]due), lingering: make(map[string]bool), kick: make(chan struct{}, 1)},
	}
	s.sched.init()
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST "+channel.RequestsPath, s.handleRequest)
	s.mux.HandleFunc("GET "+channel.RequestsPath+"/{op}/{order_no}", s.handleQuery)
	s.mux.HandleFunc("POST "+channel.BatchPath, s.handleBatch)
	s.mux.HandleFunc("POST "+StatementsPath+"/{date}", s.handleStatement)
	s.mux.HandleFunc("GET "+StatementsPath+"/{date}", s.handleStatementGet)
	if cfg.StatementEvery > 0 && cfg.StatementDir != "" {
		s.everyStatement()
	}
	return s, nil
}

// Start listens on addr (host:port; port 0 picks one) and serves a New(cfg) there.
func Start(addr string, cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("fake: %w", err)
	}
	s.ln = ln
	s.hs = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serving", "err", err)
		}
	}()
	s.log.Info("fake channel listening", "addr", ln.Addr().String())
	return s, nil
}

// Addr is where Start listens; nil for New's server.
func (s *Server) Addr() net.Addr {
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// URL is the base URL of Start's server, for channel.NewHTTPClient; "" for New's.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// ServeHTTP serves the channel protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close stops the server: held answers go out at once, Start's server stops taking
// connections and waits for its handlers, then outcomes and notices still due are waited
// for until ctx is done (those left are abandoned), and every changed statement is written.
// The error is ctx's when it ended the wait, joined with any statement's.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() { close(s.held) })
	var errs []error
	if s.hs != nil {
		if err := s.hs.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("fake: shutting the HTTP server down: %w", err))
		}
	}
	if err := s.sched.drain(ctx); err != nil {
		errs = append(errs, fmt.Errorf("fake: waiting for outcomes and notices: %w", err))
	}
	s.sched.stop()
	if _, err := s.WriteStatements(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Server) handleRequest(w http.ResponseWriter, r *http.Request) {
	wr, code, err := readRequest(w, r)
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	rec, fresh, code, err := s.take(wr)
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	if fresh {
		s.start(rec)
	}
	res := s.result(rec)
	if fresh && rec.fate.timeout {
		s.loseAnswer(w, r, rec, res)
		return
	}
	writeJSON(w, http.StatusOK, res.ToWire())
}

// take checks a request and records it (or finds it); the caller starts it when it is new
// (fresh). An error comes with the HTTP code that says it.
func (s *Server) take(wr channel.WireRequest) (rec *record, fresh bool, code int, err error) {
	req, err := wr.Request()
	if err != nil {
		return nil, false, http.StatusBadRequest, err
	}
	if err := s.validate(req, wr.NotifyURL); err != nil {
		return nil, false, http.StatusBadRequest, err
	}
	return s.admit(req, wr.NotifyURL)
}

// handleBatch answers a batch item by item. An item whose answer the fate loses is answered
// 504: the channel took it, and the client does not learn its outcome but by query.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channel.MaxBatchBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", channel.MaxBatchBytes))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Sprintf("reading the body: %v", err))
		return
	}
	var wb channel.WireBatch
	if err := channel.DecodeStrict(body, &wb); err != nil {
		writeError(w, http.StatusBadRequest, "malformed batch: "+err.Error())
		return
	}
	if len(wb.Items) == 0 || len(wb.Items) > channel.MaxBatchItems {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("a batch of %d items (1..%d)", len(wb.Items), channel.MaxBatchItems))
		return
	}
	out := channel.WireBatchResult{Results: make([]channel.WireItemResult, len(wb.Items))}
	var fresh []*record
	defer func() { s.startAll(fresh) }()
	for i, it := range wb.Items {
		if it.Query {
			res, code, err := s.query(it.Op, it.OrderNo)
			if err != nil {
				out.Results[i] = channel.WireItemResult{Code: code, Error: err.Error()}
				continue
			}
			out.Results[i] = channel.WireItemResult{WireResult: res.ToWire()}
			continue
		}
		rec, isNew, code, err := s.take(it.WireRequest)
		if err != nil {
			out.Results[i] = channel.WireItemResult{Code: code, Error: err.Error()}
			continue
		}
		if isNew && s.cfg.Sync {
			s.start(rec)
		} else if isNew {
			fresh = append(fresh, rec) // started together once the batch is read
		}
		res := s.result(rec)
		switch {
		case isNew && rec.fate.timeout:
			s.log.Debug("losing the answer of a batch item", "order_no", rec.req.OrderNo)
			out.Results[i] = channel.WireItemResult{Code: http.StatusGatewayTimeout, Error: "answer lost (simulated)"}
		default:
			out.Results[i] = channel.WireItemResult{WireResult: res.ToWire()}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// readRequest reads a WireRequest, refusing unknown fields, trailing data and long bodies.
func readRequest(w http.ResponseWriter, r *http.Request) (channel.WireRequest, int, error) {
	var wr channel.WireRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channel.MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return wr, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds %d bytes", channel.MaxRequestBytes)
		}
		return wr, http.StatusBadRequest, fmt.Errorf("reading the body: %w", err)
	}
	if err := channel.DecodeStrict(body, &wr); err != nil {
		return wr, http.StatusBadRequest, fmt.Errorf("malformed request: %w", err)
	}
	return wr, 0, nil
}

// validate checks what the channel needs of a request.
func (s *Server) validate(r channel.Request, notifyURL string) error {
	if r.OrderNo == "" {
		return errors.New("order_no is empty")
	}
	for name, v := range map[string]string{
		"order_no": r.OrderNo, "original": r.Original, "account": r.Account, "biz_id": r.BizID,
	} {
		if len(v) > channel.MaxIDBytes {
			return fmt.Errorf("%s is longer than %d bytes", name, channel.MaxIDBytes)
		}
		if !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl) {
			return fmt.Errorf("%s is not printable UTF-8", name)
		}
	}
	if r.Amount == 0 {
		return errors.New("amount is 0")
	}
	if !validCurrency(r.Currency) {
		return fmt.Errorf("currency %q is not three capital letters", r.Currency)
	}
	if (r.Op == channel.Refund) != (r.Original != "") {
		return errors.New("original is required for a refund and only for a refund")
	}
	if s.cfg.Sync {
		return nil
	}
	u, err := url.Parse(notifyURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("notify_url %q is not an http(s) URL", notifyURL)
	}
	return nil
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for _, b := range []byte(c) {
		if b < 'A' || b > 'Z' {
			return false
		}
	}
	return true
}

// admit records a new request, or finds the one already under its order_no (fresh false).
func (s *Server) admit(r channel.Request, notifyURL string) (rec *record, fresh bool, code int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.records[r.OrderNo]; rec != nil {
		if rec.req != r {
			return nil, false, http.StatusConflict, fmt.Errorf("order_no %q is already a %s of %d %s with other fields",
				r.OrderNo, rec.req.Op, rec.req.Amount, rec.req.Currency)
		}
		return rec, false, 0, nil
	}
	if len(s.records) >= s.cfg.MaxRecords {
		if !s.full {
			s.full = true
			s.log.Warn("record book full: every new request is answered 503 from now on (raise --max-records)",
				"max_records", s.cfg.MaxRecords, "order_no", r.OrderNo)
		}
		return nil, false, http.StatusServiceUnavailable, fmt.Errorf("full: %d requests held", s.cfg.MaxRecords)
	}
	r, notifyURL = s.compact(r, notifyURL)
	rec = &record{req: r, notifyURL: notifyURL, fate: drawFate(&s.cfg, r.OrderNo)}
	rec.result = channel.Result{Status: channel.Processing}
	s.records[r.OrderNo] = rec
	return rec, true, 0, nil
}

// sharedMax bounds the distinct notify URLs and currencies held once for all requests; past
// it, each request keeps its own copy.
const sharedMax = 64

// compact is r and notifyURL as a held record keeps them, in as few objects as it can (the
// records of a long run are most of the heap, and each object is work for every collection):
// its own strings in one allocation, and the notify URL and the currency, which most requests
// share, as the one copy held for all. Called with s.mu held.
func (s *Server) compact(r channel.Request, notifyURL string) (channel.Request, string) {
	one := func(v string) string {
		if c, ok := s.shared[v]; ok {
			return c
		}
		if len(s.shared) < sharedMax {
			v = strings.Clone(v)
			s.shared[v] = v
		}
		return v
	}
	notifyURL, r.Currency = one(notifyURL), one(r.Currency)
	all := r.OrderNo + r.Original + r.OriginalTxn + r.Account + r.BizID
	cut := func(n int) string {
		v := all[:n]
		all = all[n:]
		return v
	}
	r.OrderNo, r.Original, r.OriginalTxn = cut(len(r.OrderNo)), cut(len(r.Original)), cut(len(r.OriginalTxn))
	r.Account, r.BizID = cut(len(r.Account)), cut(len(r.BizID))
	return r, notifyURL
}

// startAll starts new requests, those of one latency on one timer.
func (s *Server) startAll(recs []*record) {
	if s.cfg.Sync {
		for _, rec := range recs {
			s.start(rec)
		}
		return
	}
	byLatency := map[time.Duration][]*record{}
	for _, rec := range recs {
		s.logStart(rec)
		byLatency[rec.fate.latency] = append(byLatency[rec.fate.latency], rec)
	}
	for lat, group := range byLatency {
		if !s.sched.after(lat, func() {
			for _, rec := range group {
				s.settle(rec)
			}
		}) {
			s.log.Warn("closing: requests left processing", "requests", len(group))
		}
	}
}

func (s *Server) logStart(rec *record) {
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("request", "op", rec.req.Op, "order_no", rec.req.OrderNo, "amount", rec.req.Amount,
			"fate", fmt.Sprintf("%+v", rec.fate), "txn", rec.fate.txn(0))
	}
}

// start settles a new request: now (Sync) or after its latency.
func (s *Server) start(rec *record) {
	s.logStart(rec)
	if s.cfg.Sync {
		sleep(rec.fate.latency, s.held)
		s.settle(rec)
		return
	}
	if !s.sched.after(rec.fate.latency, func() { s.settle(rec) }) {
		s.log.Warn("closing: request left processing", "order_no", rec.req.OrderNo)
	}
}

func (s *Server) result(rec *record) channel.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return rec.result
}

// loseAnswer makes the client see no answer: the connection is dropped, or the answer is
// held back for TimeoutHold (or until the client leaves, or Close).
func (s *Server) loseAnswer(w http.ResponseWriter, r *http.Request, rec *record, res channel.Result) {
	if rec.fate.drop {
		s.log.Debug("dropping the connection", "order_no", rec.req.OrderNo)
		panic(http.ErrAbortHandler)
	}
	s.log.Debug("holding the answer", "order_no", rec.req.OrderNo, "for", s.cfg.TimeoutHold)
	t := time.NewTimer(s.cfg.TimeoutHold)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return
	case <-s.held:
	}
	writeJSON(w, http.StatusOK, res.ToWire())
}

func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request) {
	res, code, err := s.query(r.PathValue("op"), r.PathValue("order_no"))
	if err != nil {
		writeError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res.ToWire())
}

// query is where the request op/orderNo stands: not_found when there is none.
func (s *Server) query(op, orderNo string) (channel.Result, int, error) {
	o, err := channel.ParseOp(op)
	if err != nil {
		return channel.Result{}, http.StatusBadRequest, err
	}
	res := channel.Result{Status: channel.NotFound}
	s.mu.Lock()
	if rec := s.records[orderNo]; rec != nil && rec.req.Op == o {
		res = rec.result
	}
	s.mu.Unlock()
	return res, 0, nil
}

func (s *Server) handleStatement(w http.ResponseWriter, r *http.Request) {
	date := r.PathValue("date")
	if _, err := time.Parse(time.DateOnly, date); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("date %q is not YYYY-MM-DD", date))
		return
	}
	if s.cfg.StatementDir == "" {
		writeError(w, http.StatusServiceUnavailable, "statements are off (no statement dir)")
		return
	}
	path, lines, err := s.WriteStatement(date)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"date": date, "path": path, "lines": lines})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do about it
}

func writeError(w http.ResponseWriter, code int, reason string) {
	writeJSON(w, code, channel.WireError{Error: reason})
}

// sleep waits d, or until stop is closed.
func sleep(d time.Duration, stop <-chan struct{}) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
	}
}
