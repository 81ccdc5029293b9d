package fake

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// maxCallbackAnswer bounds what is read of the ledger's answer to a notice.
const maxCallbackAnswer = 4 << 10

// callback is one notice on its way to a notify_url.
type callback struct {
	url     string
	notice  channel.Notice
	body    []byte // posted alone: the notice's body and signature
	sig     string
	orderNo string
}

// outbox holds the notices due to be posted many to a post (Config.NoticeBatch > 1), by
// notify_url, and counts the goroutines posting them (at most CallbackConcurrency).
type outbox struct {
	mu        sync.Mutex
	byURL     map[string][]due
	posters   int
	lingering map[string]bool // a poster waits for the URL's notices to fill a post (NoticeLinger)
	// kick wakes a lingering poster when notices are ready that no new poster can take (all
	// CallbackConcurrency of them run): a full post, or a URL no poster lingers on.
	kick chan struct{}
}

// due is a notice's next attempt, in the outbox since at.
type due struct {
	cb      *callback
	attempt int
	at      time.Time
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
	cb := &callback{url: url, notice: n, orderNo: n.OrderNo}
	if s.cfg.NoticeBatch <= 1 {
		cb.body, cb.sig = channel.SignNotice(s.cfg.Secret, n)
	} else if s.cfg.CallbackDelay == 0 {
		s.enqueue(due{cb: cb, attempt: 1}) // no delay to wait: straight to the outbox
		return
	}
	if !s.sched.after(s.cfg.CallbackDelay, func() { s.deliver(cb, 1) }) {
		<-s.callbacks
	}
}

// deliver makes attempt number attempt to post cb, and schedules the next on failure. With
// NoticeBatch > 1, cb joins the outbox, to be posted with the others due to its URL.
func (s *Server) deliver(cb *callback, attempt int) {
	if s.cfg.NoticeBatch > 1 {
		s.enqueue(due{cb: cb, attempt: attempt})
		return
	}
	s.attempted(cb, attempt, s.post(cb.url, cb.body, cb.sig))
}

// attempted ends attempt number attempt of cb, which err says how it went: done, or the
// next attempt scheduled, or abandoned.
func (s *Server) attempted(cb *callback, attempt int, err error) {
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

// enqueue adds d to the outbox, and starts a poster if fewer than CallbackConcurrency run.
// While it waits there, d counts as scheduled work (Close waits for it).
func (s *Server) enqueue(d due) {
	if !s.sched.hold() {
		<-s.callbacks
		return
	}
	d.at = time.Now()
	s.out.mu.Lock()
	s.out.byURL[d.cb.url] = append(s.out.byURL[d.cb.url], d)
	// A poster that lingers on the URL takes d with the others, unless they fill a post now.
	ready := !s.out.lingering[d.cb.url] || len(s.out.byURL[d.cb.url]) >= s.cfg.NoticeBatch
	start := ready && s.out.posters < s.cfg.CallbackConcurrency
	if start {
		s.out.posters++
	} else if ready {
		select {
		case s.out.kick <- struct{}{}:
		default: // a kick is pending already
		}
	}
	s.out.mu.Unlock()
	if start {
		go s.poster()
	}
}

// poster posts what the outbox holds, up to NoticeBatch notices of one URL per post, until
// it is empty (or what is left waits for a poster that lingers).
func (s *Server) poster() {
	for {
		s.out.mu.Lock()
		url, batch, wait := s.nextPost(time.Now())
		if batch == nil && wait == 0 {
			s.out.posters--
			s.out.mu.Unlock()
			return
		}
		if batch == nil {
			s.out.lingering[url] = true
			s.out.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.out.kick: // something is ready that no other poster can take
				t.Stop()
			case <-s.held: // closing: what waits goes now
				t.Stop()
			}
			s.out.mu.Lock()
			delete(s.out.lingering, url)
			s.out.mu.Unlock()
			continue
		}
		s.out.mu.Unlock()
		ns := make([]channel.Notice, len(batch))
		for i, d := range batch {
			ns[i] = d.cb.notice
		}
		body, sig := channel.SignNotices(s.cfg.Secret, ns)
		err := s.post(url, body, sig)
		for _, d := range batch {
			s.attempted(d.cb, d.attempt, err)
			s.sched.release()
		}
	}
}

// nextPost (under the outbox's lock) is the next post: up to NoticeBatch notices of one URL,
// taken off the outbox; or, when the URL's notices fill no post and the first of them has
// waited less than NoticeLinger, no notices, the URL whose first notice's linger ends first,
// and how long until then. A URL another poster lingers on is left to it unless its notices
// fill a post. Nothing and 0: nothing to
// do. Once the server closes, nothing lingers.
func (s *Server) nextPost(now time.Time) (url string, batch []due, wait time.Duration) {
	linger := s.cfg.NoticeLinger
	select {
	case <-s.held: // closing: nothing lingers
		linger = 0
	default:
	}
	for u, ds := range s.out.byURL {
		full := len(ds) >= s.cfg.NoticeBatch
		if !full && s.out.lingering[u] {
			continue
		}
		if w := ds[0].at.Add(linger).Sub(now); !full && w > 0 {
			if wait == 0 || w < wait {
				url, wait = u, w
			}
			continue // another URL may be ready now
		}
		n := min(len(ds), s.cfg.NoticeBatch)
		if n == len(ds) {
			delete(s.out.byURL, u)
		} else {
			s.out.byURL[u] = ds[n:]
		}
		return u, ds[:n:n], 0
	}
	return url, nil, wait
}

// post sends one body of notices, at most CallbackConcurrency at a time; an answer other
// than 2xx is an error.
func (s *Server) post(url string, body []byte, sig string) error {
	ctx := s.sched.ctx
	select {
	case s.posting <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.posting }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(channel.SignatureHeader, sig)
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
