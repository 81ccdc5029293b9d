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

func toWire(n Notice) wireNotice {
	return wireNotice{Op: n.Op.String(), OrderNo: n.OrderNo, Txn: n.Txn, Status: n.Status.String(), Amount: n.Amount, BizID: n.BizID}
}

// SignNotice encodes n as a notice body and signs it with secret. It does not check n: the
// channel's side is trusted to send what it means.
func SignNotice(secret []byte, n Notice) (body []byte, sig string) {
	body, err := json.Marshal(toWire(n))
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
		ws[i] = toWire(n)
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
	many := IsNoticeArray(body)
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

// jsonSpace is what JSON allows before a value.
const jsonSpace = " \t\r\n"

// IsNoticeArray says whether a notice body is many notices (a JSON array) rather than one.
func IsNoticeArray(body []byte) bool {
	return bytes.HasPrefix(bytes.TrimLeft(body, jsonSpace), []byte("["))
}

// DecodeStrict decodes one JSON value into v, refusing unknown fields, repeated or
// case-folded names, invalid UTF-8 and trailing data (JSON v2 with RejectUnknownMembers).
func DecodeStrict(body []byte, v any) error { return jsonv2.Unmarshal(body, v, strict) }

// parseSigned decodes a body whose signature was verified: one notice object, or (many)
// an array of them.
func parseSigned(body []byte, many bool) ([]Notice, error) {
	if !many && !bytes.HasPrefix(bytes.TrimLeft(body, jsonSpace), []byte("{")) {
		return nil, badNotice("body is not a JSON object")
	}
	ws, err := decodeNotices(body, many)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, badNotice("an empty array of notices")
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

func badNotice(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadNotice, fmt.Sprintf(format, args...))
}

// decodeError says what the strict decoder refused.
func decodeError(err error) error {
	switch {
	case errors.Is(err, ErrBadNotice):
		return err
	case errors.Is(err, jsonv2.ErrUnknownName):
		return badNotice("unknown field: %v", err)
	case errors.Is(err, jsontext.ErrDuplicateName):
		return badNotice("field repeated: %v", err)
	}
	return badNotice("malformed JSON: %v", err)
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
	elems := []jsontext.Value{body}
	if many {
		elems = nil
		if err := jsonv2.Unmarshal(body, &elems, strict); err != nil {
			return nil, decodeError(err)
		}
		if len(elems) > MaxNoticesPerPost {
			return nil, badNotice("%d notices, more than %d", len(elems), MaxNoticesPerPost)
		}
	}
	ss := make([]strictNotice, len(elems))
	var err error
	for i, e := range elems {
		if len(e) > MaxNoticeBytes {
			err = badNotice("notice %d: %d bytes, more than %d", i, len(e), MaxNoticeBytes)
			break
		}
		if err = jsonv2.Unmarshal(e, &ss[i], strict); err != nil {
			break
		}
	}
	if err != nil {
		return nil, decodeError(err)
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
