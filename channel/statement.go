package channel

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Limits of a statement (see PROTOCOL.md, "Daily statements").
const (
	// StatementLinesMax is the most transaction lines ParseStatement reads from one statement.
	StatementLinesMax = 1_000_000
	// StatementBytesMax bounds a statement file: 1,000,000 lines of about 130 bytes, with
	// room to spare. A larger file is refused, never cut.
	StatementBytesMax = 256 << 20
	// statementFieldBytesMax bounds a field of a statement line.
	statementFieldBytesMax = MaxIDBytes
	// StatementsPath serves a day's statement: GET StatementsPath/{YYYY-MM-DD} answers the
	// file's exact bytes with its signature in SignatureHeader.
	StatementsPath = "/v1/statements"
)

// StatementHeader is the first line of every statement, exactly.
var StatementHeader = []string{"date", "txn", "op", "order_no", "original", "status", "amount", "currency", "completed_at"}

// StatementLine is one line of a channel's daily statement: one channel transaction, final.
type StatementLine struct {
	Date        string // YYYY-MM-DD, UTC: the day of CompletedAt
	Txn         string // the channel's transaction number
	Op          Op
	OrderNo     string
	Original    string // Refund: the OrderNo of the pay it refunds; empty otherwise
	Status      Status // Succeeded or Failed
	Amount      uint64 // what moved; 0 for a failed txn
	Currency    string // three upper-case letters
	CompletedAt time.Time
}

// Notice is the line as the channel's callback about the same transaction.
func (l *StatementLine) Notice() Notice {
	return Notice{Op: l.Op, OrderNo: l.OrderNo, Txn: l.Txn, Status: l.Status, Amount: l.Amount}
}

// ErrBadStatement is wrapped by every refusal of ParseStatement and VerifyStatement.
var ErrBadStatement = errors.New("channel: bad statement")

// ErrStatementSignature is wrapped by VerifyStatement's refusal of a statement whose
// signature is missing or does not verify.
var ErrStatementSignature = fmt.Errorf("%w: signature missing or wrong", ErrBadStatement)

// StatementDomain starts the bytes a statement's signature covers: it sets a statement's
// signatures apart from a notice's (which cover the body alone), so that no signed notice is
// a signed statement, nor the reverse.
const StatementDomain = "ledgercore channel statement v1\n"

// statementSigned is what a statement's signature covers: StatementDomain, the date the
// statement is of and a newline, then the file's exact bytes. The date is bound: a statement
// with no lines is the same bytes whatever its day, and signed without its date it would
// verify as any day's.
func statementSigned(date string, body []byte) []byte {
	b := make([]byte, 0, len(StatementDomain)+len(date)+1+len(body))
	b = append(b, StatementDomain...)
	b = append(b, date...)
	b = append(b, '\n')
	return append(b, body...)
}

// SignStatement is the signature of the statement of date (YYYY-MM-DD): the lower-case hex
// HMAC-SHA256, under the channel's shared secret, of StatementDomain, the date, a newline and
// the file's exact bytes.
func SignStatement(secret []byte, date string, body []byte) string {
	return sign(secret, statementSigned(date, body))
}

// VerifyStatement checks that sig is the channel's signature of body as its statement of date
// (constant time) before anything reads it, and its size. Only a statement it accepts may be
// parsed: a statement settles orders and books money, so it must come from the channel, for
// that day.
func VerifyStatement(secret []byte, date string, body []byte, sig string) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no secret to verify it with", ErrStatementSignature)
	}
	if len(body) > StatementBytesMax {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadStatement, len(body), StatementBytesMax)
	}
	want, err := hex.DecodeString(sig)
	if err != nil || len(want) != 32 {
		return ErrStatementSignature
	}
	got, _ := hex.DecodeString(SignStatement(secret, date, body))
	if !hmac.Equal(got, want) {
		return ErrStatementSignature
	}
	return nil
}

// FetchStatement asks the channel for its statement of date (YYYY-MM-DD): GET
// StatementsPath/{date}, within ctx's deadline (give one). It answers the body (at most StatementBytesMax, else an error) and
// the signature the channel sent with it, unverified: the caller verifies with
// VerifyStatement before reading it.
func (c *HTTPClient) FetchStatement(ctx context.Context, date string) (body []byte, sig string, err error) {
	if d, err := time.Parse(time.DateOnly, date); err != nil || d.Format(time.DateOnly) != date {
		return nil, "", fmt.Errorf("channel: statement date %q is not YYYY-MM-DD", date)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+StatementsPath+"/"+date, nil)
	if err != nil {
		return nil, "", err
	}
	// A statement may be large: its fetch is bounded by ctx, not by the client's timeout for
	// a request (which covers reading the body too).
	hc := *c.hc
	hc.Timeout = 0
	resp, err := hc.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("channel: statement %s: %w", date, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, StatementBytesMax+1))
	if err != nil {
		return nil, "", fmt.Errorf("channel: statement %s: %w", date, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", &HTTPError{Code: resp.StatusCode, Reason: errorReason(body)}
	}
	if len(body) > StatementBytesMax {
		return nil, "", fmt.Errorf("%w: statement %s is larger than %d bytes", ErrBadStatement, date, StatementBytesMax)
	}
	return body, resp.Header.Get(SignatureHeader), nil
}

// StatementDate is the date of a statement's lines, or "" for a statement with none.
func StatementDate(lines []StatementLine) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[0].Date
}

// ParseSignedStatement verifies a statement's signature as the statement of date and then
// parses it: a statement with no lines is a day without txns.
func ParseSignedStatement(secret, body []byte, sig, date string) ([]StatementLine, error) {
	if err := VerifyStatement(secret, date, body, sig); err != nil {
		return nil, err
	}
	lines, err := ParseStatement(bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if d := StatementDate(lines); d != "" && d != date {
		return nil, fmt.Errorf("%w: a statement of %s, asked for %s", ErrBadStatement, d, date)
	}
	return lines, nil
}

// ParseStatement reads a statement (RFC 4180 CSV), strictly: the header exactly
// StatementHeader; then at most StatementLinesMax lines, each of nine fields, all of one date;
// the date YYYY-MM-DD; txn and order_no not empty; op a known Op; original given for a refund
// and only for it; status succeeded or failed; amount a decimal without sign or leading zero,
// not 0 for a success and 0 for a failure; currency three upper-case letters; completed_at
// RFC 3339 in UTC (Z) on the line's date; no txn twice. No field is longer than MaxIDBytes.
// A refusal wraps ErrBadStatement and names the line (the header is line 1); nothing of a
// refused statement is returned.
func ParseStatement(r io.Reader) ([]StatementLine, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = len(StatementHeader)
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, badStatement(1, "empty: no header")
		}
		return nil, badStatement(1, "%v", err)
	}
	if !slices.Equal(head, StatementHeader) {
		return nil, badStatement(1, "header %q, want %q", head, StatementHeader)
	}
	var out []StatementLine
	seen := map[string]bool{}
	for n := 2; ; n++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, badStatement(n, "%v", err)
		}
		if len(out) == StatementLinesMax {
			return nil, badStatement(n, "more than %d lines", StatementLinesMax)
		}
		l, err := parseStatementLine(rec)
		if err != nil {
			return nil, badStatement(n, "%v", err)
		}
		if len(out) > 0 && l.Date != out[0].Date {
			return nil, badStatement(n, "date %s in a statement of %s", l.Date, out[0].Date)
		}
		if seen[l.Txn] {
			return nil, badStatement(n, "txn %q twice", l.Txn)
		}
		seen[l.Txn] = true
		out = append(out, l)
	}
}

func badStatement(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrBadStatement, line, fmt.Sprintf(format, args...))
}

func parseStatementLine(rec []string) (StatementLine, error) {
	for i, f := range rec {
		if len(f) > statementFieldBytesMax {
			return StatementLine{}, fmt.Errorf("%s of %d bytes, at most %d", StatementHeader[i], len(f), statementFieldBytesMax)
		}
	}
	date, txn, op, orderNo, original, status, amount, currency, completed :=
		rec[0], rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7], rec[8]
	var l StatementLine
	d, err := time.Parse(time.DateOnly, date)
	if err != nil || d.Format(time.DateOnly) != date {
		return l, fmt.Errorf("date %q is not YYYY-MM-DD", date)
	}
	l.Date = date
	if txn == "" {
		return l, errors.New("txn is empty")
	}
	l.Txn = txn
	if l.Op, err = ParseOp(op); err != nil {
		return l, fmt.Errorf("unknown op %q", op)
	}
	if orderNo == "" {
		return l, errors.New("order_no is empty")
	}
	l.OrderNo = orderNo
	if (l.Op == Refund) != (original != "") {
		return l, fmt.Errorf("original %q for a %v (a refund needs one, nothing else has one)", original, l.Op)
	}
	l.Original = original
	if l.Status, err = ParseStatus(status); err != nil || l.Status != Succeeded && l.Status != Failed {
		return l, fmt.Errorf("status %q is not succeeded or failed", status)
	}
	if l.Amount, err = strconv.ParseUint(amount, 10, 64); err != nil || strconv.FormatUint(l.Amount, 10) != amount {
		return l, fmt.Errorf("amount %q is not a decimal number of minor units", amount)
	}
	if (l.Status == Succeeded) != (l.Amount > 0) {
		return l, fmt.Errorf("amount %d for a %v txn (a success moves money, a failure none)", l.Amount, l.Status)
	}
	if len(currency) != 3 || !isUpper(currency) {
		return l, fmt.Errorf("currency %q is not three upper-case letters", currency)
	}
	l.Currency = currency
	t, err := time.Parse(time.RFC3339Nano, completed)
	if err != nil || t.Location() != time.UTC || completed[len(completed)-1] != 'Z' {
		return l, fmt.Errorf("completed_at %q is not RFC 3339 in UTC", completed)
	}
	if t.Format(time.DateOnly) != date {
		return l, fmt.Errorf("completed_at %s is not on %s", completed, date)
	}
	l.CompletedAt = t
	return l, nil
}

func isUpper(s string) bool {
	for i := range len(s) {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}
