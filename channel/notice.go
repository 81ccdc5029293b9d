package channel

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxNoticeBytes is the largest notice body ParseNotice reads; a longer one is refused
// before its signature is checked.
const MaxNoticeBytes = 4 << 10

// MaxNoticesPerPost bounds the notices of one post of many (a JSON array of notices).
const MaxNoticesPerPost = 256

// MaxNoticesBytes is the largest body of many notices ParseNotices reads.
const MaxNoticesBytes = MaxNoticesPerPost * MaxNoticeBytes

// SignatureHeader carries the notice's signature: the lower-case hex HMAC-SHA256 of the exact
// body, keyed with the secret the channel and the ledger share.
const SignatureHeader = "X-Channel-Signature"

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

// SignNotices encodes ns as one body (a JSON array of notices, in their order) and signs it
// with secret, as SignNotice does one notice. It does not check ns.
func SignNotices(secret []byte, ns []Notice) (body []byte, sig string) {
	ws := make([]wireNotice, len(ns))
	for i, n := range ns {
		ws[i] = wireNotice{
			Op: n.Op.String(), OrderNo: n.OrderNo, Txn: n.Txn,
			Status: n.Status.String(), Amount: n.Amount, BizID: n.BizID,
		}
	}
	body, err := json.Marshal(ws)
	if err != nil { // strings and integers always encode
		panic(fmt.Sprintf("channel: encoding notices: %v", err))
	}
	return body, sign(secret, body)
}

// ParseNotices checks a body of one notice (a JSON object, as ParseNotice reads) or of many
// (a JSON array of 1 to MaxNoticesPerPost such objects) and its signature, and decodes it.
// The size (MaxNoticesBytes; MaxNoticeBytes for one object) and the signature are checked
// first; only a signed body is decoded, and every notice in it must be one ParseNotice
// accepts, or the whole body is refused. Every refusal wraps ErrBadNotice.
func ParseNotices(secret []byte, body []byte, sig string) ([]Notice, error) {
	if len(body) > MaxNoticesBytes {
		return nil, badNotice("body of %d bytes exceeds %d", len(body), MaxNoticesBytes)
	}
	if err := verify(secret, body, sig); err != nil {
		return nil, err
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	many := len(trimmed) > 0 && trimmed[0] == '['
	if !many && len(body) > MaxNoticeBytes {
		return nil, badNotice("body of %d bytes exceeds %d", len(body), MaxNoticeBytes)
	}
	return parseSigned(body, many)
}

// ParseNotice checks a notice body and its signature and decodes it. The size and the
// signature are checked first (in constant time); only a signed body is decoded. The body
// must be one JSON object with exactly the keys op, order_no, txn, status, amount and biz_id
// (spelled so, each once, none null), op a known Op, status succeeded or failed, order_no
// and txn not empty. Every refusal wraps ErrBadNotice.
func ParseNotice(secret []byte, body []byte, sig string) (Notice, error) {
	if len(body) > MaxNoticeBytes {
		return Notice{}, badNotice("body of %d bytes exceeds %d", len(body), MaxNoticeBytes)
	}
	if err := verify(secret, body, sig); err != nil {
		return Notice{}, err
	}
	ns, err := parseSigned(body, false)
	if err != nil {
		return Notice{}, err
	}
	return ns[0], nil
}

// verify checks sig against body, in constant time.
func verify(secret, body []byte, sig string) error {
	if len(secret) == 0 {
		return badNotice("no secret to verify with")
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return badNotice("signature is not %d hex bytes", sha256.Size)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return badNotice("signature does not match")
	}
	return nil
}

// parseSigned decodes a body whose signature was verified: one notice object, or (many)
// an array of them.
func parseSigned(body []byte, many bool) ([]Notice, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != "{["[b2i(many)] {
		if many {
			return nil, badNotice("body is not a JSON array")
		}
		return nil, badNotice("body is not a JSON object")
	}
	ws, err := decodeNotices(body, many)
	if err != nil {
		return nil, err
	}
	switch {
	case len(ws) == 0:
		return nil, badNotice("an empty array of notices")
	case len(ws) > MaxNoticesPerPost:
		return nil, badNotice("%d notices, more than %d", len(ws), MaxNoticesPerPost)
	}
	ns := make([]Notice, len(ws))
	for i, w := range ws {
		n, err := w.notice()
		if err != nil {
			if many {
				return nil, fmt.Errorf("notice %d: %w", i, err)
			}
			return nil, err
		}
		ns[i] = n
	}
	return ns, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func badNotice(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadNotice, fmt.Sprintf(format, args...))
}

// strictNotice is a notice as the strict decoder reads it: a nil field was missing or null.
type strictNotice struct {
	Op      *string `json:"op"`
	OrderNo *string `json:"order_no"`
	Txn     *string `json:"txn"`
	Status  *string `json:"status"`
	Amount  *uint64 `json:"amount"`
	BizID   *string `json:"biz_id"`
}

// strict are the decoder's options beyond JSON v2's defaults (which already refuse a
// repeated member, a name spelled in another case, invalid UTF-8 and trailing data).
var strict = jsonv2.RejectUnknownMembers(true)

// decodeNotices decodes one notice object, or an array of them (many), refusing a key
// spelled in another case, a repeated key, an unknown key, a null, a missing key, invalid
// UTF-8 or trailing data (encoding/json would accept most of them).
func decodeNotices(body []byte, many bool) ([]wireNotice, error) {
	var ss []strictNotice
	var err error
	if many {
		err = jsonv2.Unmarshal(body, &ss, strict)
	} else {
		ss = make([]strictNotice, 1)
		err = jsonv2.Unmarshal(body, &ss[0], strict)
	}
	switch {
	case errors.Is(err, jsonv2.ErrUnknownName):
		return nil, badNotice("unknown field: %v", err)
	case errors.Is(err, jsontext.ErrDuplicateName):
		return nil, badNotice("field repeated: %v", err)
	case err != nil:
		return nil, badNotice("malformed JSON: %v", err)
	}
	ws := make([]wireNotice, len(ss))
	for i, s := range ss {
		for _, f := range []struct {
			name string
			set  bool
		}{{"op", s.Op != nil}, {"order_no", s.OrderNo != nil}, {"txn", s.Txn != nil},
			{"status", s.Status != nil}, {"amount", s.Amount != nil}, {"biz_id", s.BizID != nil}} {
			if !f.set {
				return nil, badNotice("field %q missing or null", f.name)
			}
		}
		ws[i] = wireNotice{Op: *s.Op, OrderNo: *s.OrderNo, Txn: *s.Txn, Status: *s.Status, Amount: *s.Amount, BizID: *s.BizID}
	}
	return ws, nil
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
