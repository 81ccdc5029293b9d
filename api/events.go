package api

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ledgercore/ledger/events"
	"github.com/ledgercore/ledger/ledger"
	ledgerv1 "github.com/ledgercore/ledger/proto/ledger/v1"
)

// errEventsOff: the server runs without an event stream.
var errEventsOff = errors.New("the event stream is off on this server")

// WithEvents serves the event stream of seq (Subscribe).
func WithEvents(seq *events.Sequencer) Option { return func(s *Service) { s.events = seq } }

// SubscribeSendTimeoutDefault is how long one message to a subscriber may wait for the
// subscriber to read (gRPC's flow control) before the subscription is cut off: a client that
// stops reading would otherwise hold one of the FollowersMax slots for ever.
const SubscribeSendTimeoutDefault = 30 * time.Second

// SubscribeLinger is how long a subscriber at the head of the stream waits for more events
// before it is sent what it has (events.FollowOptions.Linger), unless it has a full batch:
// under a load of small commits each message carries several commits' events instead of
// one, for at most that much latency.
const SubscribeLinger = 5 * time.Millisecond

// WithSubscribeSendTimeout sets the subscribers' send deadline (SubscribeSendTimeoutDefault).
func WithSubscribeSendTimeout(d time.Duration) Option {
	return func(s *Service) { s.sendTimeout = d }
}

// errSlowSubscriber: a message to the subscriber waited past the send deadline.
var errSlowSubscriber = errors.New("events: the subscriber did not read within the send deadline; subscribe again from the last sequence processed")

// Subscribe implements LedgerService: the event stream from from_sequence+1 (or the oldest
// event kept), in messages of consecutive events, until the client goes away.
func (s *Service) Subscribe(req *ledgerv1.SubscribeRequest, stream grpc.ServerStreamingServer[ledgerv1.SubscribeResponse]) error {
	if s.events == nil {
		return status.Error(codes.FailedPrecondition, errEventsOff.Error())
	}
	next := req.GetFromSequence() + 1
	if req.GetOldest() {
		next = s.events.Horizon()
	} else if req.GetFromSequence() == math.MaxUint64 || req.GetFromSequence() > s.events.Last() {
		// Nothing this server streamed: a consumer of another store, or a bug in its
		// bookkeeping; waiting would hide it.
		return status.Errorf(codes.OutOfRange, "from_sequence %d is past the stream's last sequence %d",
			req.GetFromSequence(), s.events.Last())
	}
	timeout := s.sendTimeout
	if timeout <= 0 {
		timeout = SubscribeSendTimeoutDefault
	}
	// A send blocks while the client does not read, and nothing but the stream's end
	// unblocks it: one goroutine per subscriber sends, one message at a time, and the
	// handler ends the stream (which ends the blocked send) when a message waits past the
	// deadline.
	msgs, sent := make(chan *encoded), make(chan error, 1)
	defer close(msgs)
	go func() {
		for m := range msgs {
			sent <- stream.SendMsg(m)
		}
	}()
	deadline := time.NewTimer(timeout)
	deadline.Stop()
	defer deadline.Stop()
	var scratch EncodeScratch
	encode := func(dst []byte, batch []events.Event) []byte { return EncodeEvents(dst, batch, &scratch) }
	err := s.events.FollowWire(stream.Context(), next, events.FollowOptions{Coalesce: true, Linger: SubscribeLinger}, encode, func(b events.WireBatch) error {
		// The window's bytes as they are (encoded once for every follower, never changed).
		msgs <- &encoded{parts: slices.Clone(b.Parts)} // the sender waits for it: the previous send returned
		deadline.Reset(timeout)
		select {
		case err := <-sent:
			deadline.Stop()
			return err
		case <-deadline.C:
			return fmt.Errorf("%w (%s)", errSlowSubscriber, timeout)
		}
	})
	return eventsStatus(err)
}

// eventsStatus maps the stream's errors: a trimmed sequence is OUT_OF_RANGE with the oldest
// one kept (in the message and as an ErrorInfo detail, metadata oldest_sequence).
func eventsStatus(err error) error {
	var trimmed *events.TrimmedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &trimmed):
		st := status.New(codes.OutOfRange, err.Error())
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: "EVENTS_TRIMMED", Domain: "ledger.v1",
			Metadata: map[string]string{"oldest_sequence": fmt.Sprint(trimmed.Oldest)}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, events.ErrTooManyFollowers), errors.Is(err, errSlowSubscriber):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, events.ErrStopped):
		return status.Error(codes.Unavailable, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err // stream.Send's own
	}
	return toStatus(err)
}

// EventToProto translates an event of the stream to the wire.
func EventToProto(e *events.Event) *ledgerv1.Event {
	out := &ledgerv1.Event{Sequence: e.Seq}
	switch {
	case e.Transfer != nil:
		out.Kind = &ledgerv1.Event_Transfer{Transfer: TransferToProto(e.Transfer)}
	case e.Posting != nil:
		out.Kind = &ledgerv1.Event_Posting{Posting: PostingToProto(e.Posting)}
	case e.Exception >= 0:
		out.Kind = &ledgerv1.Event_Exception{Exception: ExceptionToProto(e.Order, e.Exception)}
	default:
		out.Kind = &ledgerv1.Event_Order{Order: OrderToProto(e.Order)}
	}
	return out
}

// PostingToProto translates a posting to the wire.
func PostingToProto(p *ledger.Posting) *ledgerv1.Posting {
	return &ledgerv1.Posting{AccountId: p.Account, Timestamp: p.Timestamp, TransferId: p.TransferID,
		Op: ledgerv1.PostingOp(p.Op), Amount: p.Amount, Held: p.Held, Split: p.Split,
		DebitsPending: u128ToProto(p.After.DebitsPending), DebitsPosted: u128ToProto(p.After.DebitsPosted),
		CreditsPending: u128ToProto(p.After.CreditsPending), CreditsPosted: u128ToProto(p.After.CreditsPosted),
		Day: uint32(p.Day)}
}

// WatchEvents exports the event stream's figures.
func (m *Metrics) WatchEvents(seq *events.Sequencer) {
	st := &seq.Stats
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	counter := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn)
	}
	m.Registry.MustRegister(
		gauge("ledger_events_last_sequence", "The last sequence of the event stream: durable, numbered and streamed.",
			func() float64 { return float64(st.Last.Load()) }),
		gauge("ledger_events_oldest_sequence", "The oldest sequence the event stream keeps (--events-retain).",
			func() float64 { return float64(st.Horizon.Load()) }),
		gauge("ledger_events_followers", "Subscribers and publishers following the event stream.",
			func() float64 { return float64(st.Followers.Load()) }),
		gauge("ledger_events_follower_lag_events", "The largest lag of a follower behind the stream's last sequence, in events.",
			func() float64 { return float64(seq.Lag()) }),
		counter("ledger_events_index_batches_total", "Batches of global sequences the sequencer wrote (unsynced; shown once durable).",
			func() float64 { return float64(st.IndexBatches.Load()) }),
		gauge("ledger_events_window_events", "Events in the stream's in-memory window (events.RingEventsMax; filled only while someone follows).",
			func() float64 { return float64(st.RingEvents.Load()) }),
		gauge("ledger_events_window_bytes", "Bytes the stream's in-memory window holds (events.RingBytesMax): ledger rounds encoded for the wire, payment rounds estimated.",
			func() float64 { return float64(st.RingBytes.Load()) }),
		counter("ledger_events_store_reads_total", "Reads of events from the store by followers behind the in-memory ring.",
			func() float64 { return float64(st.StoreReads.Load()) }),
		counter("ledger_events_trims_total", "Times retention trimmed the oldest events.",
			func() float64 { return float64(st.Trims.Load()) }),
		gauge("ledger_events_retention_held_events",
			"Events past --events-retain that retention keeps because the NATS publisher has not published them or the reconciliation (--recon-follow) has not reconciled them.",
			func() float64 { return float64(st.RetentionHeld.Load()) }),
	)
}
