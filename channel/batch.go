package channel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// The batch exchange of the HTTP protocol (PROTOCOL.md, "Batches"): many requests and
// queries in one POST, answered item by item in one body.
const (
	// BatchPath takes a batch of items (POST).
	BatchPath = "/v1/batch"
	// MaxBatchItems bounds the items of one batch.
	MaxBatchItems = 256
	// MaxBatchBytes bounds a batch body a channel reads: MaxBatchItems requests of at most
	// 8 KiB each when encoded, which a request whose fields keep to MaxIDBytes always is,
	// every byte escaped.
	MaxBatchBytes = MaxBatchItems * (8 << 10)
	// MaxBatchResultBytes bounds a batch answer body the client reads.
	MaxBatchResultBytes = MaxBatchItems * (8 << 10)
)

// Item is one call of a batch: send Request, or, with Query, ask where Request.Op and
// Request.OrderNo stand (the other fields are not sent).
type Item struct {
	Request Request
	Query   bool
}

// ItemResult is the channel's answer about one item of a batch: Result, or Err when the
// channel could not say (the outcome of that item is unknown, as with any Client error).
type ItemResult struct {
	Result Result
	Err    error
}

// Batcher is a Client that can also send many items in one exchange. One error of Batch
// leaves every item unknown; otherwise out[i] answers items[i].
type Batcher interface {
	Client
	Batch(ctx context.Context, items []Item, out []ItemResult) error
}

// WireItem is one item of a batch as JSON: a WireRequest, with "query": true for a query
// (which carries only op and order_no).
type WireItem struct {
	Query bool `json:"query,omitempty"`
	WireRequest
}

// WireBatch is the body of POST BatchPath.
type WireBatch struct {
	Items []WireItem `json:"items"`
}

// WireItemResult answers one item: a WireResult when Error is empty, else the code and the
// reason the item has no answer (as the code of a single request would say).
type WireItemResult struct {
	WireResult
	Code  int    `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// WireBatchResult is the answer to a batch: one result per item, in the items' order.
type WireBatchResult struct {
	Results []WireItemResult `json:"results"`
}

var _ Batcher = (*HTTPClient)(nil)

// Batch sends items in one POST BatchPath. An error (transport, timeout, any code but 200,
// an unreadable answer, or one whose count of results differs from the items') leaves every
// item unknown. Otherwise out[i] is the channel's answer to items[i]: a Result, or an Err
// (an *HTTPError with the item's code, so a 409 matches ErrConflict) leaving that item
// unknown. A Do item answered not_found is an Err too, as Do says.
func (c *HTTPClient) Batch(ctx context.Context, items []Item, out []ItemResult) error {
	if len(items) == 0 || len(items) > MaxBatchItems {
		return fmt.Errorf("channel: a batch of %d items (1..%d)", len(items), MaxBatchItems)
	}
	if len(out) != len(items) {
		return fmt.Errorf("channel: %d results for %d items", len(out), len(items))
	}
	wb := WireBatch{Items: make([]WireItem, len(items))}
	for i, it := range items {
		if _, err := ParseOp(it.Request.Op.String()); err != nil {
			return err
		}
		if it.Query {
			wb.Items[i] = WireItem{Query: true, WireRequest: WireRequest{Op: it.Request.Op.String(), OrderNo: it.Request.OrderNo}}
		} else {
			wb.Items[i] = WireItem{WireRequest: it.Request.ToWire(c.notifyURL)}
		}
	}
	body, err := json.Marshal(wb)
	if err != nil {
		return fmt.Errorf("channel: encoding a batch: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+BatchPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("channel: batch: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("channel: batch of %d: %w", len(items), err)
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, MaxBatchResultBytes+1))
	if err != nil {
		return fmt.Errorf("channel: batch of %d: reading the answer: %w", len(items), err)
	}
	if len(ans) > MaxBatchResultBytes {
		return fmt.Errorf("channel: batch of %d: answer longer than %d bytes", len(items), MaxBatchResultBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("channel: batch of %d: %w", len(items), &HTTPError{Code: resp.StatusCode, Reason: errorReason(ans)})
	}
	var wr WireBatchResult
	if err := json.Unmarshal(ans, &wr); err != nil {
		return fmt.Errorf("channel: batch of %d: unreadable answer: %w", len(items), err)
	}
	if len(wr.Results) != len(items) {
		return fmt.Errorf("channel: batch of %d: answered %d results", len(items), len(wr.Results))
	}
	for i, w := range wr.Results {
		out[i] = w.result(items[i])
	}
	return nil
}

// result decodes the answer to it.
func (w WireItemResult) result(it Item) ItemResult {
	what := "query"
	if !it.Query {
		what = it.Request.Op.String()
	}
	fail := func(err error) ItemResult {
		return ItemResult{Err: fmt.Errorf("channel: %s %s: %w", what, it.Request.OrderNo, err)}
	}
	if w.Error != "" || w.Code != 0 {
		if w.Code == 0 || w.Code == http.StatusOK {
			return fail(fmt.Errorf("unreadable answer: error %q with code %d", w.Error, w.Code))
		}
		return fail(&HTTPError{Code: w.Code, Reason: w.Error})
	}
	res, err := w.WireResult.Result()
	if err != nil {
		return fail(fmt.Errorf("unreadable answer: %w", err))
	}
	if !it.Query && res.Status == NotFound {
		return fail(errors.New("answered not_found to a request"))
	}
	return ItemResult{Result: res}
}
