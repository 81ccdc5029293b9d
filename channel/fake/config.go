package fake

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ledgercore/ledger/channel"
)

// DemoSecret is the HMAC secret of demos: cmd/fakechannel and ledgerd use it when given no
// secret file, and say so loudly. Never use it for anything else.
const DemoSecret = "fakechannel-demo-secret-do-not-use"

// Defaults of Config's limits, used where a field is zero.
const (
	// MaxRecordsDefault bounds the requests the server holds; a new one beyond is answered
	// 503. Each request has at most two txns, so this bounds the txns too.
	MaxRecordsDefault = 100_000
	// MaxPendingCallbacksDefault bounds the notices waiting to be delivered (including
	// retries); a notice beyond is dropped with a warning (the ledger queries).
	MaxPendingCallbacksDefault = 10_000
	// CallbackConcurrencyDefault bounds the notices being posted at once.
	CallbackConcurrencyDefault = 16
	// CallbackAttemptsDefault bounds the posts of one notice.
	CallbackAttemptsDefault = 6
	// CallbackBackoffDefault is the wait before the second post of a notice; it doubles each
	// attempt, up to CallbackBackoffMax.
	CallbackBackoffDefault = 200 * time.Millisecond
	// CallbackBackoffMax caps the wait between posts of a notice.
	CallbackBackoffMax = 30 * time.Second
	// CallbackTimeoutDefault bounds one post of a notice.
	CallbackTimeoutDefault = 5 * time.Second
	// TimeoutHoldDefault is how long an answer chosen to time out is held back.
	TimeoutHoldDefault = 30 * time.Second
	// NoticeLingerServed is the NoticeLinger of the servers fakechannel and ledgerd
	// --fake-channel start (Config's zero is none).
	NoticeLingerServed = 2 * time.Millisecond
)

// Config is the behaviour of a simulated channel. Rates are fractions in [0, 1]; the zero
// Config is a channel that succeeds everything at once (after Latency) and reports it by
// notice; Secret is required.
type Config struct {
	Secret []byte // shared with the ledger; signs notices
	Seed   uint64 // with the order_no, decides each request's fate

	Latency time.Duration // before a request's outcome
	Jitter  time.Duration // up to this much more latency, drawn per request
	Sync    bool          // answer succeeded/failed at once (after the latency); no notices

	FailRate        float64 // requests that end Failed
	TimeoutRate     float64 // new requests whose answer is held back or whose connection is dropped
	DupCallbackRate float64 // requests whose first notice is sent twice
	DupPayRate      float64 // succeeded Pays that succeed a second time under a second txn
	MismatchRate    float64 // succeeded Pays whose amount differs from the one asked

	// Statement faults: the channel's statement misreports what it did (its books are wrong,
	// not its answers and notices). Only the own succeeded txn of a request that had no
	// duplicate payment and no amount mismatch is faulted, each with at most one fault, drawn
	// from (Seed, the txn) with one draw against the rates in this order: so that each fault
	// is exactly one difference in the ledger's reconciliation (StatementFaults lists them).
	// Together they are at most 1.
	StatementDropRate   float64 // the txn is left out of the statement (the ledger finds it short)
	StatementAmountRate float64 // its line shows another amount (amount_mismatch)
	StatementStatusRate float64 // its line says failed (status_mismatch)
	StatementLongRate   float64 // a line follows it of a payment no one asked for (long)

	CallbackDelay time.Duration // before a notice's first post
	TimeoutHold   time.Duration // how long a held answer waits (0: TimeoutHoldDefault)

	StatementDir   string        // where WriteStatement writes; empty: statements are off
	StatementEvery time.Duration // write the changed statements this often; 0: only on demand and on Close

	MaxRecords          int           // 0: MaxRecordsDefault
	MaxPendingCallbacks int           // 0: MaxPendingCallbacksDefault
	CallbackConcurrency int           // 0: CallbackConcurrencyDefault
	CallbackAttempts    int           // 0: CallbackAttemptsDefault
	CallbackBackoff     time.Duration // 0: CallbackBackoffDefault
	CallbackTimeout     time.Duration // 0: CallbackTimeoutDefault
	// NoticeBatch is how many notices due to one notify_url may go in one post (a JSON array,
	// PROTOCOL.md); 0 or 1: one notice per post (a JSON object).
	NoticeBatch int
	// NoticeLinger (with NoticeBatch > 1) is how long a notice waits in the outbox for
	// others due to its notify_url before a post takes it, unless a full batch is there
	// first; 0: a notice is posted as soon as a poster is free, with whatever else waits.
	NoticeLinger time.Duration

	HTTPClient *http.Client     // posts notices; nil: one of its own
	Logger     *slog.Logger     // nil: discard
	Now        func() time.Time // the clock of completions; nil: time.Now
}

// withDefaults checks c and fills its zero limits.
func (c Config) withDefaults() (Config, error) {
	if len(c.Secret) == 0 {
		return c, errors.New("fake: no secret")
	}
	for name, r := range map[string]float64{
		"fail rate": c.FailRate, "timeout rate": c.TimeoutRate, "dup callback rate": c.DupCallbackRate,
		"dup pay rate": c.DupPayRate, "mismatch rate": c.MismatchRate, "statement drop rate": c.StatementDropRate,
		"statement amount rate": c.StatementAmountRate, "statement status rate": c.StatementStatusRate,
		"statement long rate": c.StatementLongRate,
	} {
		if !(r >= 0 && r <= 1) {
			return c, fmt.Errorf("fake: %s %v is not in [0, 1]", name, r)
		}
	}
	if sum := c.StatementDropRate + c.StatementAmountRate + c.StatementStatusRate + c.StatementLongRate; sum > 1 {
		return c, fmt.Errorf("fake: the statement fault rates add up to %v, more than 1", sum)
	}
	for name, d := range map[string]time.Duration{
		"latency": c.Latency, "jitter": c.Jitter, "callback delay": c.CallbackDelay, "timeout hold": c.TimeoutHold,
		"callback backoff": c.CallbackBackoff, "notice linger": c.NoticeLinger, "callback timeout": c.CallbackTimeout, "statement every": c.StatementEvery,
	} {
		if d < 0 {
			return c, fmt.Errorf("fake: %s %v is negative", name, d)
		}
	}
	for name, n := range map[string]int{
		"max records": c.MaxRecords, "max pending callbacks": c.MaxPendingCallbacks,
		"callback concurrency": c.CallbackConcurrency, "callback attempts": c.CallbackAttempts,
		"notice batch": c.NoticeBatch,
	} {
		if n < 0 {
			return c, fmt.Errorf("fake: %s %d is negative", name, n)
		}
	}
	if c.NoticeBatch > channel.MaxNoticesPerPost {
		return c, fmt.Errorf("fake: notice batch %d exceeds %d", c.NoticeBatch, channel.MaxNoticesPerPost)
	}
	setDefault(&c.TimeoutHold, TimeoutHoldDefault)
	setDefault(&c.MaxRecords, MaxRecordsDefault)
	setDefault(&c.MaxPendingCallbacks, MaxPendingCallbacksDefault)
	setDefault(&c.CallbackConcurrency, CallbackConcurrencyDefault)
	setDefault(&c.CallbackAttempts, CallbackAttemptsDefault)
	setDefault(&c.CallbackBackoff, CallbackBackoffDefault)
	setDefault(&c.CallbackTimeout, CallbackTimeoutDefault)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: channel.NewHTTPTransport(c.CallbackConcurrency)}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}
