package channel

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxNoticeBytes is the largest notice body ParseNotice reads; a longer one is refused
// before its signature is checked.
const MaxNoticeBytes = 4 << 10

// SignatureHeader carries the notice's signature: the lower-case hex HMAC-SHA256 of the exact
// body, keyed with the secret the channel and the ledger share.
const SignatureHeader = "X-Channel-Signature"

// noticeFields are the keys of a notice body, every one required, no other allowed.
var noticeFields = []string{"op", "order_no", "txn", "status", "amount", "biz_id"}

// wireNotice is a notice as JSON.
type wireNotice struct {
	Op      string `json:"op"`
	OrderNo string `json:"order_no"`
	Txn     string `json:"txn"`
	Status  string `json:"status"`
	Amount  uint64 `json:"amount"`
	BizID   string `json:"biz_id"`
}

// SignNotice encodes n as a notice body and signs it with secret. It does not check n: the
// channel's side is trusted to send what it means.
func SignNotice(secret []byte, n Notice) (body []byte, sig string) {
	body, err := json.Marshal(wireNotice{
		Op: n.Op.String(), OrderNo: n.OrderNo, Txn: n.Txn,
		Status: n.Status.String(), Amount: n.Amount, BizID: n.BizID,
	})
	if err != nil { // strings and an integer always encode
		panic(fmt.Sprintf("channel: encoding a notice: %v", err))
	}
	return body, sign(secret, body)
}

func sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// ParseNotice checks a notice body and its signature and decodes it. The size and the
// signature are checked first (in constant time); only a signed body is decoded. The body
// must be one JSON object with exactly the keys op, order_no, txn, status, amount and biz_id
// (spelled so, each once, none null), op a known Op, status succeeded or failed, order_no
// and txn not empty. Every refusal wraps ErrBadNotice.
func ParseNotice(secret []byte, body []byte, sig string) (Notice, error) {
	if len(secret) == 0 {
		return Notice{}, badNotice("no secret to verify with")
	}
	if len(body) > MaxNoticeBytes {
		return Notice{}, badNotice("body of %d bytes exceeds %d", len(body), MaxNoticeBytes)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return Notice{}, badNotice("signature is not %d hex bytes", sha256.Size)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return Notice{}, badNotice("signature does not match")
	}
	w, err := decodeNotice(body)
	if err != nil {
		return Notice{}, err
	}
	return w.notice()
}

func badNotice(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadNotice, fmt.Sprintf(format, args...))
}

// decodeNotice reads the object key by key, so that a key spelled in another case, a
// repeated key, a null or trailing data is refused (encoding/json would accept them).
func decodeNotice(body []byte) (wireNotice, error) {
	var w wireNotice
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return w, badNotice("body is not a JSON object")
	}
	seen := make(map[string]bool, len(noticeFields))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return w, badNotice("malformed JSON: %v", err)
		}
		key, _ := t.(string) // inside an object, a token here is always a key
		if seen[key] {
			return w, badNotice("field %q repeated", key)
		}
		seen[key] = true
		if err := decodeField(dec, &w, key); err != nil {
			return w, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return w, badNotice("malformed JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return w, badNotice("data after the JSON object")
	}
	for _, f := range noticeFields {
		if !seen[f] {
			return w, badNotice("field %q missing", f)
		}
	}
	return w, nil
}

func decodeField(dec *json.Decoder, w *wireNotice, key string) error {
	var dst any
	switch key {
	case "op":
		dst = &w.Op
	case "order_no":
		dst = &w.OrderNo
	case "txn":
		dst = &w.Txn
	case "status":
		dst = &w.Status
	case "amount":
		dst = &w.Amount
	case "biz_id":
		dst = &w.BizID
	default:
		return badNotice("unknown field %q", key)
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return badNotice("malformed JSON: %v", err)
	}
	if bytes.Equal(raw, []byte("null")) {
		return badNotice("field %q is null", key)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badNotice("field %q: %s is not a %s", key, te.Value, te.Type)
		}
		return badNotice("field %q: %v", key, err)
	}
	return nil
}

func (w wireNotice) notice() (Notice, error) {
	op, err := ParseOp(w.Op)
	if err != nil {
		return Notice{}, badNotice("unknown op %q", w.Op)
	}
	st, err := ParseStatus(w.Status)
	if err != nil || (st != Succeeded && st != Failed) {
		return Notice{}, badNotice("status %q is not succeeded or failed", w.Status)
	}
	if w.OrderNo == "" {
		return Notice{}, badNotice("order_no is empty")
	}
	if w.Txn == "" {
		return Notice{}, badNotice("txn is empty")
	}
	if st == Succeeded && w.Amount == 0 {
		return Notice{}, badNotice("a success of amount 0")
	}
	return Notice{Op: op, OrderNo: w.OrderNo, Txn: w.Txn, Status: st, Amount: w.Amount, BizID: w.BizID}, nil
}
