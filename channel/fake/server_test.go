package fake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ledgercore/ledger/channel"
)

var secret = []byte("fake-test-secret")

const wait = 5 * time.Second // for a notice that must come

// inbox is the ledger's notify endpoint: it verifies every notice and keeps it.
type inbox struct {
	t        *testing.T
	notices  chan channel.Notice
	failures atomic.Int32 // answer 500 to this many posts first
	posts    atomic.Int32
	biggest  atomic.Int32 // the most notices one post carried
}

func (in *inbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.posts.Add(1)
	body, _ := io.ReadAll(r.Body)
	if in.failures.Add(-1) >= 0 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	ns, err := channel.ParseNotices(secret, body, r.Header.Get(channel.SignatureHeader))
	if err != nil {
		in.t.Errorf("notice refused: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	for b := in.biggest.Load(); int32(len(ns)) > b && !in.biggest.CompareAndSwap(b, int32(len(ns))); b = in.biggest.Load() {
	}
	for _, n := range ns {
		in.notices <- n
	}
}

func (in *inbox) next() channel.Notice {
	in.t.Helper()
	select {
	case n := <-in.notices:
		return n
	case <-time.After(wait):
		in.t.Fatal("no notice came")
	}
	return channel.Notice{}
}

func (in *inbox) none() {
	in.t.Helper()
	select {
	case n := <-in.notices:
		in.t.Fatalf("unexpected notice %+v", n)
	case <-time.After(100 * time.Millisecond):
	}
}

type env struct {
	srv    *Server
	client *channel.HTTPClient
	inbox  *inbox
	base   string // the fake's URL
	notify string // the inbox's URL
}

func (e *env) clientBase(*testing.T) string { return e.base }
func (e *env) inboxURL() string             { return e.notify }

// fateOf is the fate drawn for orderNo.
func (e *env) fateOf(orderNo string) fate {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	return e.srv.records[orderNo].fate
}

// start serves a fake per cfg (secret and small backoffs filled in) and a notify inbox.
func start(t *testing.T, cfg Config) *env {
	t.Helper()
	in := &inbox{t: t, notices: make(chan channel.Notice, 1000)}
	ins := httptest.NewServer(in)
	t.Cleanup(ins.Close)
	cfg.Secret = secret
	setDefault(&cfg.CallbackBackoff, 10*time.Millisecond)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	hc := &http.Client{Timeout: 2 * time.Second}
	return &env{srv: srv, client: channel.NewHTTPClient(hs.URL, ins.URL, hc), inbox: in, base: hs.URL, notify: ins.URL}
}

func pay(orderNo string, amount uint64) channel.Request {
	return channel.Request{Op: channel.Pay, OrderNo: orderNo, Amount: amount, Currency: "CNY", Account: "card", BizID: "biz-" + orderNo}
}

func refund(orderNo, original string, amount uint64) channel.Request {
	return channel.Request{Op: channel.Refund, OrderNo: orderNo, Original: original, Amount: amount, Currency: "CNY"}
}

func (e *env) do(t *testing.T, r channel.Request) channel.Result {
	t.Helper()
	res, err := e.client.Do(context.Background(), r)
	if err != nil {
		t.Fatalf("Do(%s): %v", r.OrderNo, err)
	}
	return res
}

func (e *env) query(t *testing.T, op channel.Op, orderNo string) channel.Result {
	t.Helper()
	res, err := e.client.Query(context.Background(), op, orderNo)
	if err != nil {
		t.Fatalf("Query(%s): %v", orderNo, err)
	}
	return res
}

func TestPayIsProcessingThenNotified(t *testing.T) {
	e := start(t, Config{Seed: 1, Latency: 200 * time.Millisecond})
	if res := e.do(t, pay("p-1", 1000)); res.Status != channel.Processing {
		t.Fatalf("answer %+v, want processing", res)
	}
	if res := e.query(t, channel.Pay, "p-1"); res.Status != channel.Processing {
		t.Fatalf("query %+v, want processing", res)
	}
	n := e.inbox.next()
	want := channel.Notice{Op: channel.Pay, OrderNo: "p-1", Txn: n.Txn, Status: channel.Succeeded, Amount: 1000, BizID: "biz-p-1"}
	if n != want || n.Txn == "" {
		t.Fatalf("notice %+v, want %+v", n, want)
	}
	res := e.query(t, channel.Pay, "p-1")
	if res != (channel.Result{Status: channel.Succeeded, Txn: n.Txn, Amount: 1000}) {
		t.Fatalf("query %+v", res)
	}
	if res := e.query(t, channel.Refund, "p-1"); res.Status != channel.NotFound {
		t.Fatalf("query of another op %+v, want not_found", res)
	}
	if res := e.query(t, channel.Pay, "nope"); res.Status != channel.NotFound {
		t.Fatalf("query of an unknown %+v, want not_found", res)
	}
	e.inbox.none()
}

func TestOrderNoIsDeduplicated(t *testing.T) {
	e := start(t, Config{Seed: 1})
	e.do(t, pay("p-1", 1000))
	first := e.inbox.next()
	if res := e.do(t, pay("p-1", 1000)); res != (channel.Result{Status: channel.Succeeded, Txn: first.Txn, Amount: 1000}) {
		t.Fatalf("again: %+v", res)
	}
	e.inbox.none()
	for _, r := range []channel.Request{pay("p-1", 999), {Op: channel.Payout, OrderNo: "p-1", Amount: 1000, Currency: "CNY"}} {
		_, err := e.client.Do(context.Background(), r)
		if !errors.Is(err, channel.ErrConflict) {
			t.Fatalf("other fields: %v, want ErrConflict", err)
		}
	}
	payout := channel.Request{Op: channel.Payout, OrderNo: "w-1", Amount: 50, Currency: "CNY", Account: "bank"}
	e.do(t, payout)
	e.do(t, payout)
	if n := e.inbox.next(); n.OrderNo != "w-1" || n.Status != channel.Succeeded {
		t.Fatalf("payout notice %+v", n)
	}
	e.inbox.none()
}

func TestRefundLimits(t *testing.T) {
	e := start(t, Config{Seed: 1, Sync: true})
	e.do(t, pay("p-1", 1000))
	e.do(t, channel.Request{Op: channel.Payout, OrderNo: "w-1", Amount: 10, Currency: "CNY"})
	cases := []struct {
		r      channel.Request
		status channel.Status
		reason string
	}{
		{refund("r-1", "p-1", 600), channel.Succeeded, ""},
		{refund("r-2", "p-1", 401), channel.Failed, "refund of 401 exceeds the 400 left"},
		{refund("r-3", "p-1", 400), channel.Succeeded, ""},
		{refund("r-4", "p-1", 1), channel.Failed, "exceeds the 0 left"},
		{refund("r-5", "nope", 1), channel.Failed, `original "nope" is not a pay`},
		{refund("r-6", "w-1", 1), channel.Failed, `original "w-1" is not a pay`},
		{channel.Request{Op: channel.Refund, OrderNo: "r-7", Original: "p-1", Amount: 1, Currency: "USD"}, channel.Failed, "is in CNY, not USD"},
	}
	for _, c := range cases {
		res := e.do(t, c.r)
		if res.Status != c.status || !strings.Contains(res.Reason, c.reason) || res.Txn == "" {
			t.Errorf("%s: %+v, want %s %q", c.r.OrderNo, res, c.status, c.reason)
		}
	}
	// A refund never executes twice: the same order_no again is the same refund.
	if res := e.do(t, refund("r-1", "p-1", 600)); res.Status != channel.Succeeded {
		t.Fatalf("r-1 again: %+v", res)
	}
	e.inbox.none() // Sync: no notices
}

func TestRefundOfAFailedPay(t *testing.T) {
	e := start(t, Config{Seed: 1, Sync: true, FailRate: 1})
	if res := e.do(t, pay("p-1", 1000)); res.Status != channel.Failed || res.Amount != 0 {
		t.Fatalf("pay: %+v", res)
	}
	if res := e.do(t, refund("r-1", "p-1", 1)); !strings.Contains(res.Reason, "is failed, not succeeded") {
		t.Fatalf("refund: %+v", res)
	}
}

func TestDupCallback(t *testing.T) {
	e := start(t, Config{Seed: 1, DupCallbackRate: 1})
	e.do(t, pay("p-1", 1000))
	a, b := e.inbox.next(), e.inbox.next()
	if a != b || a.Status != channel.Succeeded {
		t.Fatalf("notices %+v and %+v, want the same twice", a, b)
	}
	e.inbox.none()
}

func TestDupPay(t *testing.T) {
	e := start(t, Config{Seed: 1, DupPayRate: 1})
	e.do(t, pay("p-1", 1000))
	a, b := e.inbox.next(), e.inbox.next()
	if a.OrderNo != "p-1" || b.OrderNo != "p-1" || a.Status != channel.Succeeded || b.Status != channel.Succeeded ||
		a.Amount != 1000 || b.Amount != 1000 || a.Txn == b.Txn {
		t.Fatalf("notices %+v and %+v, want two payments under two txns", a, b)
	}
	e.inbox.none()
	// Both payments can be refunded.
	e.do(t, refund("r-1", "p-1", 2000))
	if n := e.inbox.next(); n.Status != channel.Succeeded || n.Amount != 2000 {
		t.Fatalf("refund of both: %+v", n)
	}
}

func TestMismatch(t *testing.T) {
	e := start(t, Config{Seed: 1, MismatchRate: 1})
	for _, no := range []string{"p-1", "p-2", "p-3", "p-4"} {
		e.do(t, pay(no, 1000))
		n := e.inbox.next()
		if n.Status != channel.Succeeded || n.Amount == 1000 || n.Amount < 900 || n.Amount > 1100 {
			t.Fatalf("%s: notice %+v, want a succeeded amount other than 1000 within 10%%", no, n)
		}
		if res := e.query(t, channel.Pay, n.OrderNo); res.Amount != n.Amount {
			t.Fatalf("%s: query %+v, notice %+v", no, res, n)
		}
	}
	// The mismatch is a pay's only.
	e.do(t, channel.Request{Op: channel.Payout, OrderNo: "w-1", Amount: 1000, Currency: "CNY"})
	if n := e.inbox.next(); n.Amount != 1000 {
		t.Fatalf("payout notice %+v", n)
	}
}

func TestTimeoutLosesTheAnswerNotTheRequest(t *testing.T) {
	e := start(t, Config{Seed: 1, TimeoutRate: 1})
	hc := &http.Client{Timeout: 300 * time.Millisecond}
	e.client = channel.NewHTTPClient(e.clientBase(t), e.inboxURL(), hc)
	drops := 0
	for i, no := range []string{"p-1", "p-2", "p-3", "p-4", "p-5", "p-6"} {
		_, err := e.client.Do(context.Background(), pay(no, 100))
		if err == nil {
			t.Fatalf("%s: Do answered; want an error", no)
		}
		if e.fateOf(no).drop {
			drops++
		}
		n := e.inbox.next()
		if n.OrderNo != no || n.Status != channel.Succeeded {
			t.Fatalf("%s: notice %+v", no, n)
		}
		// Sent again, it is answered: only a new request's answer is lost.
		if res := e.do(t, pay(no, 100)); res.Txn != n.Txn {
			t.Fatalf("%d %s: again %+v, notice %+v", i, no, res, n)
		}
	}
	if drops == 0 || drops == 6 {
		t.Fatalf("%d of 6 dropped; want both kinds of loss", drops)
	}
}

func TestNoticeRetried(t *testing.T) {
	e := start(t, Config{Seed: 1})
	e.inbox.failures.Store(2)
	e.do(t, pay("p-1", 10))
	if n := e.inbox.next(); n.OrderNo != "p-1" {
		t.Fatalf("notice %+v", n)
	}
	if p := e.inbox.posts.Load(); p != 3 {
		t.Fatalf("%d posts, want 3", p)
	}
}

func TestNoticeAbandoned(t *testing.T) {
	e := start(t, Config{Seed: 1, CallbackAttempts: 3})
	e.inbox.failures.Store(100)
	e.do(t, pay("p-1", 10))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.srv.sched.drain(ctx); err != nil {
		t.Fatal(err)
	}
	if p := e.inbox.posts.Load(); p != 3 {
		t.Fatalf("%d posts, want 3", p)
	}
}

// TestFull: past MaxRecords a new request is answered 503 (a repeat of a held one is not),
// and the first refusal is logged as a warning, once.
func TestFull(t *testing.T) {
	var logged bytes.Buffer
	e := start(t, Config{Seed: 1, MaxRecords: 1, Sync: true, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	e.do(t, pay("p-1", 10))
	e.do(t, pay("p-1", 10))
	if strings.Contains(logged.String(), "full") {
		t.Fatalf("warned before the book was full: %s", logged.String())
	}
	for _, no := range []string{"p-2", "p-3"} {
		_, err := e.client.Do(context.Background(), pay(no, 10))
		var he *channel.HTTPError
		if !errors.As(err, &he) || he.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: err %v, want 503", no, err)
		}
	}
	e.do(t, pay("p-1", 10)) // a repeat of the held one is still answered
	if n := strings.Count(logged.String(), "level=WARN msg=\"record book full"); n != 1 {
		t.Fatalf("%d warnings of a full book, want 1: %s", n, logged.String())
	}
	if !strings.Contains(logged.String(), "max_records=1") || !strings.Contains(logged.String(), "order_no=p-2") {
		t.Fatalf("the warning does not say the bound and the refused order: %s", logged.String())
	}
}

func TestBadRequests(t *testing.T) {
	e := start(t, Config{Seed: 1})
	for _, r := range []channel.Request{
		{Op: channel.Pay, OrderNo: "", Amount: 1, Currency: "CNY"},
		{Op: channel.Pay, OrderNo: "x", Amount: 0, Currency: "CNY"},
		{Op: channel.Pay, OrderNo: "x", Amount: 1, Currency: "cny"},
		{Op: channel.Pay, OrderNo: "x", Amount: 1, Currency: "CNY", Original: "y"},
		{Op: channel.Refund, OrderNo: "x", Amount: 1, Currency: "CNY"},
		{Op: channel.Pay, OrderNo: strings.Repeat("x", channel.MaxIDBytes+1), Amount: 1, Currency: "CNY"},
		{Op: channel.Pay, OrderNo: "a\nb", Amount: 1, Currency: "CNY"},
	} {
		_, err := e.client.Do(context.Background(), r)
		var he *channel.HTTPError
		if !errors.As(err, &he) || he.Code != http.StatusBadRequest {
			t.Errorf("%+v: %v, want 400", r, err)
		}
	}
	noNotify := channel.NewHTTPClient(e.clientBase(t), "", nil)
	if _, err := noNotify.Do(context.Background(), pay("p-1", 1)); err == nil || !strings.Contains(err.Error(), "notify_url") {
		t.Fatalf("no notify_url: %v", err)
	}
}

// Notices due together go together, up to NoticeBatch to a post; a failed post is retried
// whole, and Close waits for what is waiting.
func TestNoticeBatch(t *testing.T) {
	e := start(t, Config{Seed: 1, Latency: 20 * time.Millisecond, NoticeBatch: 4, CallbackConcurrency: 1})
	e.inbox.failures.Store(1)
	const n = 30
	for i := range n {
		e.do(t, pay(fmt.Sprint("p-", i), 10))
	}
	seen := map[string]bool{}
	for range n {
		seen[e.inbox.next().OrderNo] = true
	}
	if len(seen) != n {
		t.Fatalf("%d orders notified of %d", len(seen), n)
	}
	e.inbox.none()
	if b := e.inbox.biggest.Load(); b < 2 || b > 4 {
		t.Fatalf("the biggest post carried %d notices; want 2 to 4", b)
	}
	if p := e.inbox.posts.Load(); p >= n+1 {
		t.Fatalf("%d posts for %d notices (one failed)", p, n)
	}
}

// With a NoticeLinger, notices that fall due apart wait for each other and go in one post,
// unless they fill a post first; Close does not wait for a linger.
func TestNoticeLinger(t *testing.T) {
	e := start(t, Config{Seed: 1, Latency: 5 * time.Millisecond, NoticeBatch: 8, NoticeLinger: time.Minute,
		CallbackConcurrency: 4})
	for i := range 12 { // due a few milliseconds apart: a full post of 8, and 4 that linger
		e.do(t, pay(fmt.Sprint("p-", i), 10))
		time.Sleep(time.Millisecond)
	}
	for range 8 {
		e.inbox.next()
	}
	e.inbox.none()
	if p, b := e.inbox.posts.Load(), e.inbox.biggest.Load(); p != 1 || b != 8 {
		t.Fatalf("%d posts, the biggest of %d: want one full post of 8", p, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		select {
		case <-e.inbox.notices:
		default:
			t.Fatal("Close returned before the lingering notices went")
		}
	}
	if p := e.inbox.posts.Load(); p != 2 {
		t.Fatalf("%d posts, want the 4 left in one", p)
	}
}

// With every poster lingering (CallbackConcurrency of them), notices that fill a post, or
// that are due to a URL no poster lingers on, still go at once: the lingering poster is
// woken for them.
func TestNoticeLingerAtTheCap(t *testing.T) {
	e := start(t, Config{Seed: 1, NoticeBatch: 4, NoticeLinger: time.Minute, CallbackConcurrency: 1})
	other := channel.NewHTTPClient(e.base, e.notify+"/other", &http.Client{Timeout: 2 * time.Second})
	e.do(t, pay("a-0", 10)) // the one poster lingers on the first URL
	time.Sleep(20 * time.Millisecond)
	for i := range 4 { // a full post to the other URL
		if _, err := other.Do(context.Background(), pay(fmt.Sprint("b-", i), 10)); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if n := e.inbox.next(); !strings.HasPrefix(n.OrderNo, "b-") {
			t.Fatalf("notice %+v before the full post to the other URL", n)
		}
	}
	for i := 1; i < 4; i++ { // the first URL's post fills up
		e.do(t, pay(fmt.Sprint("a-", i), 10))
	}
	for range 4 {
		if n := e.inbox.next(); !strings.HasPrefix(n.OrderNo, "a-") {
			t.Fatalf("notice %+v", n)
		}
	}
	if p := e.inbox.posts.Load(); p != 2 {
		t.Fatalf("%d posts, want two full ones", p)
	}
}

// nextPost takes a full post or one whose linger is over, leaves a URL another poster
// lingers on to it, and otherwise waits for the URL whose linger ends first.
func TestNextPost(t *testing.T) {
	now := time.Now()
	s := &Server{held: make(chan struct{}), cfg: Config{NoticeBatch: 3, NoticeLinger: 100 * time.Millisecond},
		out: outbox{byURL: map[string][]due{}, lingering: map[string]bool{}}}
	at := func(ago time.Duration, n int) []due {
		ds := make([]due, n)
		for i := range ds {
			ds[i].at = now.Add(-ago)
		}
		return ds
	}
	s.out.byURL["young"] = at(10*time.Millisecond, 1)
	s.out.byURL["older"] = at(60*time.Millisecond, 1)
	s.out.byURL["held"] = at(90*time.Millisecond, 1)
	s.out.lingering["held"] = true
	for range 20 { // the map's order is random
		if url, batch, wait := s.nextPost(now); url != "older" || batch != nil || wait != 40*time.Millisecond {
			t.Fatalf("%s %d %v: want to wait 40ms for older", url, len(batch), wait)
		}
	}
	s.out.byURL["held"] = at(0, 3) // full: taken though another poster lingers on it
	if url, batch, _ := s.nextPost(now); url != "held" || len(batch) != 3 {
		t.Fatalf("%s %d: want held's full post", url, len(batch))
	}
	if url, batch, _ := s.nextPost(now.Add(60 * time.Millisecond)); url != "older" || len(batch) != 1 {
		t.Fatalf("%s %d: want older, its linger over", url, len(batch))
	}
	close(s.held) // closing: nothing lingers
	if url, batch, _ := s.nextPost(now); url != "young" || len(batch) != 1 {
		t.Fatalf("%s %d: want young at once", url, len(batch))
	}
	if url, batch, wait := s.nextPost(now); url != "" || batch != nil || wait != 0 {
		t.Fatalf("%s %d %v: want nothing", url, len(batch), wait)
	}
}

// A batch is answered item by item; an item whose answer the fate loses is answered 504 and
// still processed.
func TestBatchEndpoint(t *testing.T) {
	e := start(t, Config{Seed: 1, TimeoutRate: 0.5, Latency: 50 * time.Millisecond})
	lost, kept := "", ""
	for i := 0; lost == "" || kept == ""; i++ {
		no := fmt.Sprint("p-", i)
		if drawFate(&e.srv.cfg, no).timeout {
			lost = no
		} else {
			kept = no
		}
	}
	e.do(t, pay("dup", 10))
	e.inbox.next()
	items := []channel.Item{
		{Request: pay(kept, 10)},
		{Request: pay(lost, 20)},
		{Request: pay("dup", 10)},
		{Request: pay("dup", 11)}, // the same order_no, another amount
		{Request: channel.Request{Op: channel.Pay, OrderNo: "dup"}, Query: true},
		{Request: channel.Request{Op: channel.Payout, OrderNo: "dup"}, Query: true},
		{Request: channel.Request{Op: channel.Pay, OrderNo: "x", Amount: 0, Currency: "CNY"}},
	}
	out := make([]channel.ItemResult, len(items))
	if err := e.client.Batch(context.Background(), items, out); err != nil {
		t.Fatal(err)
	}
	var he *channel.HTTPError
	switch {
	case out[0].Err != nil || out[0].Result.Status != channel.Processing:
		t.Fatalf("new: %+v", out[0])
	case !errors.As(out[1].Err, &he) || he.Code != http.StatusGatewayTimeout:
		t.Fatalf("lost: %+v", out[1])
	case out[2].Err != nil || out[2].Result.Status != channel.Succeeded:
		t.Fatalf("again: %+v", out[2])
	case !errors.Is(out[3].Err, channel.ErrConflict):
		t.Fatalf("conflict: %+v", out[3])
	case out[4].Err != nil || out[4].Result.Status != channel.Succeeded:
		t.Fatalf("query: %+v", out[4])
	case out[5].Err != nil || out[5].Result.Status != channel.NotFound:
		t.Fatalf("query of another op: %+v", out[5])
	case !errors.As(out[6].Err, &he) || he.Code != http.StatusBadRequest:
		t.Fatalf("bad item: %+v", out[6])
	}
	got := map[string]bool{}
	got[e.inbox.next().OrderNo] = true
	got[e.inbox.next().OrderNo] = true
	if !got[kept] || !got[lost] {
		t.Fatalf("notices for %v; want %s and %s", got, kept, lost)
	}
	for _, body := range []string{`{"items":[]}`, `{"items":[{"op":"pay","x":1}]}`, `[]`, `{"items":[` + strings.Repeat(`{"query":true,"op":"pay","order_no":"a"},`, channel.MaxBatchItems) + `{"query":true,"op":"pay","order_no":"a"}]}`} {
		resp, err := http.Post(e.base+channel.BatchPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%.60s: HTTP %d, want 400", body, resp.StatusCode)
		}
	}
}

func TestCloseFlushesNotices(t *testing.T) {
	for _, batch := range []int{0, 4} {
		t.Run(fmt.Sprint("notice batch ", batch), func(t *testing.T) {
			e := start(t, Config{Seed: 1, Latency: 50 * time.Millisecond, CallbackDelay: 50 * time.Millisecond, NoticeBatch: batch})
			e.do(t, pay("p-1", 10))
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := e.srv.Close(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case n := <-e.inbox.notices:
				if n.OrderNo != "p-1" {
					t.Fatalf("notice %+v", n)
				}
			default:
				t.Fatal("Close returned before the notice went")
			}
		})
	}
}

// TestDeterministic: the fates depend on the seed and the order_no, not on arrival order.
func TestDeterministic(t *testing.T) {
	cfg := Config{Sync: true, FailRate: 0.5, MismatchRate: 0.5, DupPayRate: 0.5}
	nos := []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}
	run := func(seed uint64, reverse bool) map[string]channel.Result {
		c := cfg
		c.Seed = seed
		e := start(t, c)
		got := make(map[string]channel.Result)
		for i := range nos {
			no := nos[i]
			if reverse {
				no = nos[len(nos)-1-i]
			}
			got[no] = e.do(t, pay(no, 1000))
		}
		return got
	}
	a, b, c := run(7, false), run(7, true), run(8, false)
	same := func(x, y map[string]channel.Result) bool {
		for k := range x {
			if x[k] != y[k] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatalf("seed 7 forwards %v\nbackwards %v", a, b)
	}
	if same(a, c) {
		t.Fatal("seeds 7 and 8 gave the same run")
	}
	failed := 0
	for _, r := range a {
		if r.Status == channel.Failed {
			failed++
		}
	}
	if failed == 0 || failed == len(nos) {
		t.Fatalf("%d of %d failed at rate 0.5", failed, len(nos))
	}
}

func TestStatement(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 26, 23, 59, 59, 0, time.UTC)
	var tick atomic.Int64
	clock := func() time.Time { return now.Add(time.Duration(tick.Add(1)) * time.Millisecond) }
	e := start(t, Config{Seed: 3, Sync: true, StatementDir: dir, Now: clock, DupPayRate: 1}) // every pay is paid twice
	p1 := e.do(t, pay("p-1", 1000))
	e.do(t, refund("r-1", "p-1", 1500))
	e.do(t, refund("r-2", "p-1", 501))
	tick.Store(1000) // the next completes the next day
	p2 := e.do(t, pay("p-2", 70))

	path, lines, err := e.srv.WriteStatement("2026-11-26")
	if err != nil || lines != 4 || path != filepath.Join(dir, "statement-2026-11-26.csv") {
		t.Fatalf("WriteStatement = %q, %d, %v", path, lines, err)
	}
	dup := e.fateOf("p-1").txn(1)
	r1, r2 := e.query(t, channel.Refund, "r-1").Txn, e.query(t, channel.Refund, "r-2").Txn
	want := "date,txn,op,order_no,original,status,amount,currency,completed_at\n" +
		"2026-11-26," + min(p1.Txn, dup) + ",pay,p-1,,succeeded,1000,CNY,2026-11-26T23:59:59.001Z\n" +
		"2026-11-26," + max(p1.Txn, dup) + ",pay,p-1,,succeeded,1000,CNY,2026-11-26T23:59:59.001Z\n" +
		"2026-11-26," + r1 + ",refund,r-1,p-1,succeeded,1500,CNY,2026-11-26T23:59:59.002Z\n" +
		"2026-11-26," + r2 + ",refund,r-2,p-1,failed,0,CNY,2026-11-26T23:59:59.003Z\n"
	if got := readFile(t, path); got != want {
		t.Fatalf("statement:\n%s\nwant:\n%s", got, want)
	}

	// The 27th has not ended: the channel has no signed statement of it yet; its file as it
	// stands has no signature beside it.
	if _, _, _, err := e.srv.Statement("2026-11-27"); !errors.Is(err, ErrNotFinal) {
		t.Fatalf("Statement of a day not ended: %v", err)
	}
	if _, _, err := e.srv.WriteStatement("2026-11-27"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SignatureName("2026-11-27"))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a day not ended has a signature file: %v", err)
	}
	tick.Store(int64(25 * time.Hour / time.Millisecond)) // the 27th is over

	// Close writes the day not yet written; the written one is not rewritten.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	dup2 := e.fateOf("p-2").txn(1)
	want2 := "date,txn,op,order_no,original,status,amount,currency,completed_at\n" +
		"2026-11-27," + min(p2.Txn, dup2) + ",pay,p-2,,succeeded,70,CNY,2026-11-27T00:00:00.001Z\n" +
		"2026-11-27," + max(p2.Txn, dup2) + ",pay,p-2,,succeeded,70,CNY,2026-11-27T00:00:00.001Z\n"
	if got := readFile(t, filepath.Join(dir, "statement-2026-11-27.csv")); got != want2 {
		t.Fatalf("next day:\n%s\nwant:\n%s", got, want2)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Fatalf("%d files in the statement dir, want 2 statements and their signatures", len(entries))
	}
	for _, d := range []string{"2026-11-26", "2026-11-27"} {
		sig := strings.TrimSpace(readFile(t, filepath.Join(dir, SignatureName(d))))
		if err := channel.VerifyStatement(secret, d, []byte(readFile(t, filepath.Join(dir, StatementName(d)))), sig); err != nil {
			t.Fatalf("statement %s: %v", d, err)
		}
	}
}

func TestStatementEndpoint(t *testing.T) {
	dir := t.TempDir()
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).UnixNano())
	e := start(t, Config{Seed: 1, Sync: true, StatementDir: dir, Now: func() time.Time { return time.Unix(0, now.Load()) }})
	e.do(t, pay("p-1", 5))
	const date = "2026-11-26"
	// The day has not ended: its file is written as it stands, unsigned, and there is no
	// signed statement to fetch (409).
	resp, err := http.Post(e.clientBase(t)+StatementsPath+"/"+date, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := os.Stat(filepath.Join(dir, SignatureName(date))); resp.StatusCode != 200 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("POST the statement of a day not ended: %d, signature file: %v", resp.StatusCode, err)
	}
	c := channel.NewHTTPClient(e.clientBase(t), "", nil)
	var he *channel.HTTPError
	if _, _, err := c.FetchStatement(context.Background(), date); !errors.As(err, &he) || he.Code != http.StatusConflict {
		t.Fatalf("fetched the statement of a day not ended: %v", err)
	}
	now.Store(time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixNano())
	resp, err = http.Post(e.clientBase(t)+StatementsPath+"/"+date, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"lines":1`) {
		t.Fatalf("POST statement: %d %s", resp.StatusCode, body)
	}
	if got := readFile(t, filepath.Join(dir, StatementName(date))); strings.Count(got, "\n") != 2 {
		t.Fatalf("statement %q", got)
	}
	resp, err = http.Post(e.clientBase(t)+StatementsPath+"/yesterday", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST a bad date: %d", resp.StatusCode)
	}
	// GET: the same bytes, signed for the day; the client fetches them and they verify.
	got, sig, err := c.FetchStatement(context.Background(), date)
	if err != nil || string(got) != readFile(t, filepath.Join(dir, StatementName(date))) {
		t.Fatalf("FetchStatement = %q, %v", got, err)
	}
	if err := channel.VerifyStatement(secret, date, got, sig); err != nil {
		t.Fatal(err)
	}
	if err := channel.VerifyStatement(secret, "2026-11-25", got, sig); err == nil {
		t.Fatal("the statement of the 26th verifies as the 25th's")
	}
	if file := strings.TrimSpace(readFile(t, filepath.Join(dir, SignatureName(date)))); file != sig {
		t.Fatalf("signature file %q, served %q", file, sig)
	}
	if _, _, err := c.FetchStatement(context.Background(), "2026-13-01"); err == nil {
		t.Fatal("fetched a statement of a bad date")
	}
}

func TestStart(t *testing.T) {
	srv, err := Start("127.0.0.1:0", Config{Secret: secret, Seed: 1, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	c := channel.NewHTTPClient(srv.URL(), "", nil)
	if res, err := c.Do(context.Background(), pay("p-1", 5)); err != nil || res.Status != channel.Succeeded {
		t.Fatalf("Do = %+v, %v", res, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Query(context.Background(), channel.Pay, "p-1"); err == nil {
		t.Fatal("Query after Close answered")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestStatementFaults: each fault misreports one clean succeeded txn on the statement (left
// out, another amount, failed, followed by a line no one asked for), as StatementFaults
// lists it; the channel's answers are the truth; a failed txn, a duplicate payment and an
// amount mismatch are never faulted; a txn's fault is drawn from the seed and the txn alone.
func TestStatementFaults(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	const date = "2026-11-26"
	for _, c := range []struct {
		name string
		cfg  Config
		kind StatementFault
	}{
		{"drop", Config{StatementDropRate: 1}, FaultDrop},
		{"amount", Config{StatementAmountRate: 1}, FaultAmount},
		{"status", Config{StatementStatusRate: 1}, FaultStatus},
		{"long", Config{StatementLongRate: 1}, FaultLong},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Seed, cfg.Sync, cfg.Now = 5, true, func() time.Time { return now }
			e := start(t, cfg)
			res := e.do(t, pay("p-1", 1000))
			if res.Status != channel.Succeeded || res.Amount != 1000 {
				t.Fatalf("the channel's answer is faulted: %+v", res)
			}
			body, _, _, err := e.srv.render(date, false)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := channel.ParseStatement(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			faults := e.srv.StatementFaults(date)
			if len(faults) != 1 || faults[0].Kind != c.kind || faults[0].Date != date {
				t.Fatalf("faults %+v, want one %v", faults, c.kind)
			}
			f := faults[0]
			switch c.kind {
			case FaultDrop:
				if len(lines) != 0 || f.Txn != res.Txn || f.Amount != 1000 {
					t.Fatalf("dropped: lines %+v, fault %+v", lines, f)
				}
			case FaultAmount:
				if len(lines) != 1 || lines[0].Txn != res.Txn || lines[0].Amount != f.Shown || f.Shown == 1000 ||
					f.Shown < 900 || f.Shown > 1100 || lines[0].Status != channel.Succeeded {
					t.Fatalf("amount: lines %+v, fault %+v", lines, f)
				}
			case FaultStatus:
				if len(lines) != 1 || lines[0].Txn != res.Txn || lines[0].Status != channel.Failed || lines[0].Amount != 0 {
					t.Fatalf("status: lines %+v, fault %+v", lines, f)
				}
			case FaultLong:
				if len(lines) != 2 || f.Txn == res.Txn || f.OrderNo != "EXT-"+f.Txn {
					t.Fatalf("long: lines %+v, fault %+v", lines, f)
				}
				for _, l := range lines {
					if l.Txn == f.Txn && (l.OrderNo != f.OrderNo || l.Amount != 1000 || l.Status != channel.Succeeded || l.Op != channel.Pay) {
						t.Fatalf("the long line %+v, fault %+v", l, f)
					}
				}
			}
			if q := e.query(t, channel.Pay, "p-1"); q.Txn != res.Txn || q.Amount != 1000 || q.Status != channel.Succeeded {
				t.Fatalf("the query answer is faulted: %+v", q)
			}
		})
	}

	// Never faulted: a failure, a duplicate payment's collections, an amount mismatch.
	for name, cfg := range map[string]Config{"failed": {FailRate: 1}, "dup pay": {DupPayRate: 1}, "mismatch": {MismatchRate: 1}} {
		cfg.Seed, cfg.Sync, cfg.Now = 5, true, func() time.Time { return now }
		cfg.StatementDropRate = 1
		e := start(t, cfg)
		e.do(t, pay("p-1", 1000))
		if fs := e.srv.StatementFaults(date); len(fs) != 0 {
			t.Errorf("%s: faulted %+v", name, fs)
		}
	}

	// The draw is the txn's: the same seed and txn give the same fault, whatever the rates of
	// the kinds after it.
	c := Config{Seed: 9, StatementDropRate: 0.3, StatementAmountRate: 0.3}
	for i := range 200 {
		id := fmt.Sprintf("FC%04d", i)
		k1, s1, l1 := drawStatementFault(&c, id, 5000)
		c2 := c
		c2.StatementStatusRate, c2.StatementLongRate = 0.2, 0.2
		k2, s2, l2 := drawStatementFault(&c2, id, 5000)
		if k1 != FaultNone && (k1 != k2 || s1 != s2 || l1 != l2) {
			t.Fatalf("txn %s: %v %d %s, then %v %d %s", id, k1, s1, l1, k2, s2, l2)
		}
	}
	if _, err := New(Config{Secret: secret, StatementDropRate: 0.6, StatementLongRate: 0.6}); err == nil {
		t.Fatal("fault rates adding up to 1.2 taken")
	}
}
