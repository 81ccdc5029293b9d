package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// maxCallbackAnswer bounds what is read of the ledger's answer to a notice.
const maxCallbackAnswer = 4 << 10

// callback is one notice on its way to a notify_url.
type callback struct {
	url     string
	body    []byte
	sig     string
	orderNo string
}

// notify sends n to url after CallbackDelay, retrying with backoff. Nothing is sent in Sync
// mode; a notice beyond MaxPendingCallbacks is dropped.
func (s *Server) notify(url string, n channel.Notice) {
	if s.cfg.Sync || url == "" {
		return
	}
	select {
	case s.callbacks <- struct{}{}:
	default:
		s.log.Warn("notice dropped: too many pending", "order_no", n.OrderNo, "txn", n.Txn,
			"limit", s.cfg.MaxPendingCallbacks)
		return
	}
	body, sig := channel.SignNotice(s.cfg.Secret, n)
	cb := &callback{url: url, body: body, sig: sig, orderNo: n.OrderNo}
	if !s.sched.after(s.cfg.CallbackDelay, func() { s.deliver(cb, 1) }) {
		<-s.callbacks
	}
}

// deliver makes attempt number attempt to post cb, and schedules the next on failure.
func (s *Server) deliver(cb *callback, attempt int) {
	err := s.post(cb)
	if err == nil {
		<-s.callbacks
		s.log.Debug("notice delivered", "order_no", cb.orderNo, "attempt", attempt)
		return
	}
	if attempt >= s.cfg.CallbackAttempts {
		<-s.callbacks
		s.log.Warn("notice abandoned", "order_no", cb.orderNo, "attempts", attempt, "err", err)
		return
	}
	wait := backoff(s.cfg.CallbackBackoff, attempt)
	s.log.Info("notice failed; retrying", "order_no", cb.orderNo, "attempt", attempt, "in", wait, "err", err)
	if !s.sched.after(wait, func() { s.deliver(cb, attempt+1) }) {
		<-s.callbacks
	}
}

// backoff is the wait after the failed attempt number attempt: base doubled per attempt
// after the first, at most CallbackBackoffMax.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < CallbackBackoffMax; i++ {
		d *= 2
	}
	return min(d, CallbackBackoffMax)
}

// post sends cb once, at most CallbackConcurrency at a time; an answer other than 2xx is an
// error.
func (s *Server) post(cb *callback) error {
	ctx := s.sched.ctx
	select {
	case s.posting <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.posting }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cb.url, bytes.NewReader(cb.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(channel.SignatureHeader, cb.sig)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxCallbackAnswer))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
