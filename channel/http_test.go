package channel

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// stub answers every call with code and body, and keeps the last request.
type stub struct {
	code   int
	body   string
	delay  time.Duration
	method string
	path   string
	got    []byte
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.method, s.path = r.Method, r.URL.EscapedPath()
	s.got, _ = io.ReadAll(r.Body)
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(s.code)
	io.WriteString(w, s.body)
}

func newStub(t *testing.T, code int, body string) (*stub, *HTTPClient) {
	s := &stub{code: code, body: body}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, NewHTTPClient(srv.URL+"/", "http://ledger/notify", srv.Client())
}

var testRequest = Request{Op: Refund, OrderNo: "r-1", Original: "p-1", Amount: 500, Currency: "CNY", Account: "acct", BizID: "b"}

func TestDoSendsTheRequest(t *testing.T) {
	s, c := newStub(t, 200, `{"status":"processing","txn":"","amount":0,"reason":""}`)
	res, err := c.Do(context.Background(), testRequest)
	if err != nil || res != (Result{Status: Processing}) {
		t.Fatalf("Do = %+v, %v", res, err)
	}
	if s.method != http.MethodPost || s.path != RequestsPath {
		t.Fatalf("sent %s %s", s.method, s.path)
	}
	var w WireRequest
	if err := json.Unmarshal(s.got, &w); err != nil {
		t.Fatal(err)
	}
	want := WireRequest{Op: "refund", OrderNo: "r-1", Original: "p-1", Amount: 500, Currency: "CNY",
		Account: "acct", BizID: "b", NotifyURL: "http://ledger/notify"}
	if w != want {
		t.Fatalf("sent %+v, want %+v", w, want)
	}
}

func TestQuery(t *testing.T) {
	s, c := newStub(t, 200, `{"status":"succeeded","txn":"T9","amount":7,"reason":""}`)
	res, err := c.Query(context.Background(), Pay, "a/b c")
	if err != nil || res != (Result{Status: Succeeded, Txn: "T9", Amount: 7}) {
		t.Fatalf("Query = %+v, %v", res, err)
	}
	if s.method != http.MethodGet || s.path != RequestsPath+"/pay/a%2Fb%20c" {
		t.Fatalf("sent %s %s", s.method, s.path)
	}
	s.body = `{"status":"not_found","txn":"","amount":0,"reason":""}`
	if res, err := c.Query(context.Background(), Pay, "x"); err != nil || res.Status != NotFound {
		t.Fatalf("Query of an unknown = %+v, %v", res, err)
	}
}

func TestClientErrors(t *testing.T) {
	cases := []struct {
		name string
		code int
		body string
		want string
	}{
		{"conflict", 409, `{"error":"order_no taken"}`, "HTTP 409: order_no taken"},
		{"server error", 500, `oops`, `HTTP 500: "oops"`},
		{"full", 503, `{"error":"full"}`, "HTTP 503: full"},
		{"unreadable", 200, `{"status":`, "unreadable answer"},
		{"unknown status", 200, `{"status":"maybe"}`, "unreadable answer"},
		{"not found to a request", 200, `{"status":"not_found"}`, "answered not_found"},
		{"oversized", 200, strings.Repeat(" ", MaxResultBytes+1), "longer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, cl := newStub(t, c.code, c.body)
			_, err := cl.Do(context.Background(), testRequest)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			if errors.Is(err, ErrConflict) != (c.code == 409) {
				t.Fatalf("errors.Is(%v, ErrConflict) wrong", err)
			}
		})
	}
	_, cl := newStub(t, 200, "{}")
	if _, err := cl.Do(context.Background(), Request{Op: 9, OrderNo: "x"}); err == nil {
		t.Fatal("Do of an unknown op succeeded")
	}
	if _, err := cl.Query(context.Background(), 0, "x"); err == nil {
		t.Fatal("Query of an unknown op succeeded")
	}
}

func TestClientDeadline(t *testing.T) {
	s, c := newStub(t, 200, `{"status":"processing"}`)
	s.delay = 5 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, testRequest); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
}

func TestClientUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c := NewHTTPClient(srv.URL, "", nil)
	if _, err := c.Query(context.Background(), Pay, "x"); err == nil {
		t.Fatal("Query of a closed server succeeded")
	}
}

func TestBatch(t *testing.T) {
	s, c := newStub(t, 200, `{"results":[{"status":"processing","txn":"","amount":0,"reason":""},`+
		`{"code":409,"error":"taken"},{"status":"succeeded","txn":"T","amount":5,"reason":""},`+
		`{"status":"not_found","txn":"","amount":0,"reason":""},{"code":504,"error":"answer lost"}]}`)
	items := []Item{{Request: testRequest}, {Request: testRequest}, {Request: Request{Op: Pay, OrderNo: "p-1"}, Query: true},
		{Request: testRequest}, {Request: testRequest}}
	out := make([]ItemResult, len(items))
	if err := c.Batch(context.Background(), items, out); err != nil {
		t.Fatal(err)
	}
	if s.method != http.MethodPost || s.path != BatchPath {
		t.Fatalf("sent %s %s", s.method, s.path)
	}
	var wb WireBatch
	if err := json.Unmarshal(s.got, &wb); err != nil || len(wb.Items) != 5 {
		t.Fatalf("sent %s: %v", s.got, err)
	}
	if q := wb.Items[2]; !q.Query || q.Op != "pay" || q.OrderNo != "p-1" || q.Amount != 0 || q.NotifyURL != "" {
		t.Fatalf("query item %+v", q)
	}
	if r := wb.Items[0]; r.Query || r.WireRequest != testRequest.ToWire("http://ledger/notify") {
		t.Fatalf("request item %+v", r)
	}
	if out[0].Err != nil || out[0].Result.Status != Processing {
		t.Fatalf("item 0: %+v", out[0])
	}
	if !errors.Is(out[1].Err, ErrConflict) {
		t.Fatalf("item 1: %+v", out[1])
	}
	if out[2].Err != nil || out[2].Result != (Result{Status: Succeeded, Txn: "T", Amount: 5}) {
		t.Fatalf("item 2: %+v", out[2])
	}
	if out[3].Err == nil || !strings.Contains(out[3].Err.Error(), "not_found") {
		t.Fatalf("item 3: a request answered not_found: %+v", out[3])
	}
	var he *HTTPError
	if !errors.As(out[4].Err, &he) || he.Code != 504 {
		t.Fatalf("item 4: %+v", out[4])
	}
}

func TestBatchErrorsLeaveEveryItemUnknown(t *testing.T) {
	for _, c := range []struct {
		name string
		code int
		body string
		want string
	}{
		{"fewer results", 200, `{"results":[{"status":"processing","txn":"","amount":0,"reason":""}]}`, "answered 1 results"},
		{"not 200", 503, `{"error":"full"}`, "HTTP 503: full"},
		{"unreadable", 200, `{"results":`, "unreadable"},
		{"oversized", 200, strings.Repeat(" ", MaxBatchResultBytes+1), "longer than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, cl := newStub(t, c.code, c.body)
			items := []Item{{Request: testRequest}, {Request: testRequest}}
			err := cl.Batch(context.Background(), items, make([]ItemResult, 2))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	_, cl := newStub(t, 200, `{}`)
	if err := cl.Batch(context.Background(), nil, nil); err == nil {
		t.Fatal("an empty batch was sent")
	}
	if err := cl.Batch(context.Background(), make([]Item, MaxBatchItems+1), make([]ItemResult, MaxBatchItems+1)); err == nil {
		t.Fatal("a batch past MaxBatchItems was sent")
	}
}
