package channel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The HTTP channel protocol; PROTOCOL.md describes it in full.
const (
	// RequestsPath takes a request (POST) and, under it, answers queries (GET
	// RequestsPath/{op}/{order_no}).
	RequestsPath = "/v1/requests"
	// MaxRequestBytes bounds a request body a channel reads.
	MaxRequestBytes = 16 << 10
	// MaxResultBytes bounds an answer body the client reads.
	MaxResultBytes = 16 << 10
	// MaxIDBytes bounds order_no, original, account and biz_id (so that a notice fits in
	// MaxNoticeBytes even with every byte escaped).
	MaxIDBytes = 128
)

// WireRequest is a request as JSON, the body of POST RequestsPath.
type WireRequest struct {
	Op       string `json:"op"`
	OrderNo  string `json:"order_no"`
	Original string `json:"original,omitempty"`
	// OriginalTxn names which of the original's transactions a refund returns (a pay
	// collected twice has two); empty: the original's first.
	OriginalTxn string `json:"original_txn,omitempty"`
	Amount      uint64 `json:"amount"`
	Currency    string `json:"currency"`
	Account     string `json:"account,omitempty"`
	BizID       string `json:"biz_id,omitempty"`
	NotifyURL   string `json:"notify_url,omitempty"`
}

// ToWire encodes r, to be reported to notifyURL.
func (r Request) ToWire(notifyURL string) WireRequest {
	return WireRequest{
		Op: r.Op.String(), OrderNo: r.OrderNo, Original: r.Original, OriginalTxn: r.OriginalTxn, Amount: r.Amount,
		Currency: r.Currency, Account: r.Account, BizID: r.BizID, NotifyURL: notifyURL,
	}
}

// Request decodes w; only the op can be wrong here, a channel checks the rest.
func (w WireRequest) Request() (Request, error) {
	op, err := ParseOp(w.Op)
	if err != nil {
		return Request{}, err
	}
	return Request{
		Op: op, OrderNo: w.OrderNo, Original: w.Original, OriginalTxn: w.OriginalTxn, Amount: w.Amount,
		Currency: w.Currency, Account: w.Account, BizID: w.BizID,
	}, nil
}

// WireResult is a result as JSON, the answer of both POST and GET.
type WireResult struct {
	Status string `json:"status"`
	Txn    string `json:"txn"`
	Amount uint64 `json:"amount"`
	Reason string `json:"reason"`
}

// ToWire encodes r.
func (r Result) ToWire() WireResult {
	return WireResult{Status: r.Status.String(), Txn: r.Txn, Amount: r.Amount, Reason: r.Reason}
}

// Result decodes w.
func (w WireResult) Result() (Result, error) {
	st, err := ParseStatus(w.Status)
	if err != nil {
		return Result{}, err
	}
	if st == Succeeded && (w.Txn == "" || w.Amount == 0) {
		return Result{}, fmt.Errorf("channel: a success without a txn or an amount (%q, %d)", w.Txn, w.Amount)
	}
	return Result{Status: st, Txn: w.Txn, Amount: w.Amount, Reason: w.Reason}, nil
}

// WireError is the body of every answer other than 200.
type WireError struct {
	Error string `json:"error"`
}

// ErrConflict is wrapped by the error of a request whose OrderNo the channel already holds
// with other fields. It says nothing of that other request's outcome: ask with Query.
var ErrConflict = errors.New("channel: order_no already used by a different request")

// HTTPError is a channel's answer other than 200. Like every error of Client, it leaves the
// outcome unknown.
type HTTPError struct {
	Code   int
	Reason string // the channel's WireError, or the start of an unreadable body
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("channel: HTTP %d: %s", e.Code, e.Reason)
}

// Is makes a 409 match ErrConflict.
func (e *HTTPError) Is(target error) bool {
	return target == ErrConflict && e.Code == http.StatusConflict
}

// HTTPClient is a Client speaking the HTTP channel protocol.
type HTTPClient struct {
	base      string
	notifyURL string
	hc        *http.Client
}

var _ Client = (*HTTPClient)(nil)

// NewHTTPClient returns a client of the channel at baseURL (scheme, host and any path
// prefix, e.g. "http://127.0.0.1:7071"), asking it to send notices to notifyURL. hc nil
// means http.DefaultClient; give one with a Timeout, or pass contexts with deadlines.
func NewHTTPClient(baseURL, notifyURL string, hc *http.Client) *HTTPClient {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &HTTPClient{base: strings.TrimRight(baseURL, "/"), notifyURL: notifyURL, hc: hc}
}

// Do sends r. The answer is often Processing; the outcome comes by notice or Query.
func (c *HTTPClient) Do(ctx context.Context, r Request) (Result, error) {
	if _, err := ParseOp(r.Op.String()); err != nil {
		return Result{}, err
	}
	body, err := json.Marshal(r.ToWire(c.notifyURL))
	if err != nil {
		return Result{}, fmt.Errorf("channel: encoding request %s: %w", r.OrderNo, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+RequestsPath, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("channel: request %s: %w", r.OrderNo, err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.roundTrip(req)
	if err != nil {
		return Result{}, fmt.Errorf("channel: %s %s: %w", r.Op, r.OrderNo, err)
	}
	if res.Status == NotFound {
		return Result{}, fmt.Errorf("channel: %s %s: answered %s to a request", r.Op, r.OrderNo, res.Status)
	}
	return res, nil
}

// Query asks where the request op/orderNo stands; NotFound when the channel has none.
func (c *HTTPClient) Query(ctx context.Context, op Op, orderNo string) (Result, error) {
	if _, err := ParseOp(op.String()); err != nil {
		return Result{}, err
	}
	u := c.base + RequestsPath + "/" + url.PathEscape(op.String()) + "/" + url.PathEscape(orderNo)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Result{}, fmt.Errorf("channel: query %s: %w", orderNo, err)
	}
	res, err := c.roundTrip(req)
	if err != nil {
		return Result{}, fmt.Errorf("channel: query %s %s: %w", op, orderNo, err)
	}
	return res, nil
}

// roundTrip sends req and reads a WireResult from a 200; anything else is an error.
func (c *HTTPClient) roundTrip(req *http.Request) (Result, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResultBytes+1))
	if err != nil {
		return Result{}, fmt.Errorf("reading the answer: %w", err)
	}
	if len(body) > MaxResultBytes {
		return Result{}, fmt.Errorf("answer longer than %d bytes", MaxResultBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return Result{}, &HTTPError{Code: resp.StatusCode, Reason: errorReason(body)}
	}
	var w WireResult
	if err := json.Unmarshal(body, &w); err != nil {
		return Result{}, fmt.Errorf("unreadable answer: %w", err)
	}
	res, err := w.Result()
	if err != nil {
		return Result{}, fmt.Errorf("unreadable answer: %w", err)
	}
	return res, nil
}

// errorReason is the WireError in body, or its start when it is not one.
func errorReason(body []byte) string {
	var w WireError
	if json.Unmarshal(body, &w) == nil && w.Error != "" {
		return w.Error
	}
	const maxReason = 200
	if len(body) > maxReason {
		body = body[:maxReason]
	}
	return fmt.Sprintf("%q", body)
}

// NewHTTPTransport is a transport that keeps up to conns connections open to each host: a
// gateway with conns calls in flight (or a channel posting conns callbacks at once) reuses
// them instead of opening a connection per request (the default keeps 2).
func NewHTTPTransport(conns int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = max(conns, 100)
	t.MaxIdleConnsPerHost = max(conns, 2)
	return t
}
