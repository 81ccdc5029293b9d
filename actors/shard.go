package actors

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// shard is the actor that owns one shard's Book. It is thin: it gathers a mailbox's worth of
// work into one round, asks storage for what the book needs, runs the book, commits the
// round's effects as one synced batch, and only then replies and sends legs.
type shard struct {
	id     uint32
	l      *Ledger
	book   *ledger.Book
	writer *storage.Writer
	view   *storage.Snapshot

	needs    ledger.Needs
	fx       ledger.Effects
	accounts []*accountsPart
	parts    []*transfersPart
	waiting  map[ledger.LegKey]waiter
	queued   bool // a flushMessage is in the mailbox
	stopped  bool // after stopMessage: everything else is dropped (legs wait in outboxes)
	ticks    uint64
	legsTo   [][]ledger.Leg
	answerTo [][]ledger.LegResult
}

// waiter is a sent leg whose answer a request (or, for legs from recovery and expiry,
// nobody) waits for.
type waiter struct {
	part  *transfersPart
	index int32
	sent  uint64 // the tick it was last sent at
	first int64  // when it was first sent (Unix ns; for the age metric)
}

func newShard(l *Ledger, id uint32, book *ledger.Book) *shard {
	return &shard{id: id, l: l, book: book, writer: l.store.Writer(id), view: l.store.View(),
		waiting: make(map[ledger.LegKey]waiter), legsTo: make([][]ledger.Leg, l.cfg.Shards),
		answerTo: make([][]ledger.LegResult, l.cfg.Shards)}
}

// Receive handles one message. A panic is a broken invariant: the shard's memory can no
// longer be trusted, so the ledger's fatal handler stops the process, which recovers from
// storage on restart; Proto.Actor's supervisor never gets to restart the shard empty.
func (s *shard) Receive(ctx actor.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.l.fatal(fmt.Errorf("shard %d: %v\n%s", s.id, r, debug.Stack()))
		}
	}()
	if s.stopped {
		return
	}
	switch m := ctx.Message().(type) {
	case *transfersPart:
		s.l.queued[s.id].Add(-1)
		s.runTransfers(m)
		s.queueFlush(ctx)
	case *accountsPart:
		s.l.queued[s.id].Add(-1)
		s.book.CreateAccounts(s.l.cfg.Now(), m.accounts, m.results, &s.fx)
		s.accounts = append(s.accounts, m)
		s.queueFlush(ctx)
	case *legsMessage:
		s.book.NeedsForLegs(m.legs, &s.needs)
		s.prefetch()
		s.book.ApplyLegs(s.l.cfg.Now(), m.legs, &s.fx)
		s.queueFlush(ctx)
	case *answersMessage:
		s.book.ApplyLegResults(s.l.cfg.Now(), m.answers, &s.fx)
		s.queueFlush(ctx)
	case flushMessage:
		s.flush(ctx)
	case tickMessage:
		s.tick(ctx, m.now)
	case recoverMessage:
		s.redeliver(ctx, 0)
	case *stopMessage:
		s.flush(ctx)
		if err := s.writer.Close(); err != nil {
			s.l.fatal(fmt.Errorf("shard %d: close writer: %w", s.id, err))
		}
		s.stopped = true
		close(m.done)
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
	default:
		s.l.stats.Unexpected.Add(1)
	}
}

// recoverMessage tells a shard that every peer is up: re-send the outbox loaded from storage.
type recoverMessage struct{}

func (s *shard) queueFlush(ctx actor.Context) {
	if !s.queued {
		s.queued = true
		ctx.Send(ctx.Self(), flushMessage{})
	}
}

func (s *shard) runTransfers(p *transfersPart) {
	s.book.NeedsForTransfers(p.transfers, &s.needs)
	s.prefetch()
	before := len(s.fx.LegsOut)
	s.book.CreateTransfers(s.l.cfg.Now(), p.transfers, p.results, &s.fx)
	s.watchLegs(before, p)
	s.parts = append(s.parts, p)
}

// watchLegs records the legs the last book call sent, so that their answers reach the
// request waiting on them and unanswered ones are sent again.
func (s *shard) watchLegs(before int, p *transfersPart) {
	for _, l := range s.fx.LegsOut[before:] {
		w := waiter{index: l.Event, sent: s.ticks, first: time.Now().UnixNano()}
		if p != nil && l.Event >= 0 {
			w.part = p
			p.outstanding++
		}
		s.waiting[l.LegKey] = w
	}
}

// prefetch loads from storage what the book said it needs. A read error is fatal: the
// shard cannot tell absent from unreadable.
func (s *shard) prefetch() {
	s.must(s.view.Transfers(s.needs.Transfers, s.book.LoadTransfer))
	for _, id := range s.needs.Remote {
		a, found, err := s.view.Account(id)
		s.must(err)
		if found {
			s.book.LoadRemote(a.Info())
		}
	}
	for _, k := range s.needs.Legs {
		r, found, err := s.view.LegResult(k)
		s.must(err)
		if found {
			s.book.LoadLegResult(ledger.LegResult{LegKey: k, Result: r})
		}
	}
	s.needs.Reset()
}

func (s *shard) must(err error) {
	if err != nil {
		panic(err)
	}
}

// flush ends the round: commit, then reply, send legs and answers.
func (s *shard) flush(ctx actor.Context) {
	s.queued = false
	if !s.fx.Empty() {
		start := time.Now()
		s.must(s.writer.Commit(&s.fx, s.book.Clock()))
		s.l.cfg.CommitSeconds.Observe(time.Since(start).Seconds())
		s.l.cfg.CommitPostings.Observe(float64(len(s.fx.Postings)))
		s.l.stats.Postings.Add(uint64(len(s.fx.Postings)))
		s.l.stats.Commits.Add(1)
	}
	s.sendLegs(ctx)
	s.sendAnswers(ctx)
	for _, r := range s.fx.Answered {
		w, ok := s.waiting[r.LegKey]
		if !ok {
			continue
		}
		delete(s.waiting, r.LegKey)
		if p := w.part; p != nil {
			if r.Result != ledger.ResultOK {
				p.results[w.index] = r.Result
			}
			p.outstanding--
			if p.committed && p.outstanding == 0 {
				p.done <- p
			}
		}
	}
	for _, p := range s.accounts {
		p.done <- p
	}
	for _, p := range s.parts {
		p.committed = true
		if p.outstanding == 0 {
			p.done <- p
		}
	}
	clear(s.accounts)
	clear(s.parts)
	s.accounts, s.parts = s.accounts[:0], s.parts[:0]
	s.fx.Reset()
	s.book.Trim()
	s.l.outbox[s.id].Store(int64(s.book.OutboxLen()))
}

func (s *shard) sendLegs(ctx actor.Context) {
	for _, l := range s.fx.LegsOut {
		to := ledger.ShardOf(l.Account, s.l.cfg.Shards)
		s.legsTo[to] = append(s.legsTo[to], l)
	}
	s.sendLegsTo(ctx)
}

func (s *shard) sendAnswers(ctx actor.Context) {
	for _, r := range s.fx.LegsDone {
		s.answerTo[r.From] = append(s.answerTo[r.From], r)
	}
	for to, answers := range s.answerTo {
		if len(answers) > 0 {
			ctx.Send(s.l.pids[to], &answersMessage{answers: append([]ledger.LegResult(nil), answers...)})
			s.answerTo[to] = answers[:0]
		}
	}
}

// tick sweeps expired holds and re-sends legs unanswered for too long.
func (s *shard) tick(ctx actor.Context, now uint64) {
	s.ticks++
	before := len(s.fx.LegsOut)
	s.book.Expire(now, &s.fx)
	s.watchLegs(before, nil)
	s.redeliver(ctx, s.l.cfg.RedeliverAfterTicks)
	var oldest int64
	for _, w := range s.waiting {
		if oldest == 0 || w.first < oldest {
			oldest = w.first
		}
	}
	s.l.oldest[s.id].Store(oldest)
	if !s.fx.Empty() {
		s.queueFlush(ctx)
	}
}

// redeliver re-sends every outbox leg last sent at least age ticks ago (age 0: all of them,
// as after recovery). The credit shard applies each leg once, whatever the number of copies.
func (s *shard) redeliver(ctx actor.Context, age uint64) {
	s.book.Outbox(func(l ledger.Leg) {
		w, ok := s.waiting[l.LegKey]
		if ok && s.ticks-w.sent < age {
			return
		}
		if !ok {
			w.first = time.Now().UnixNano()
		}
		w.sent = s.ticks
		s.waiting[l.LegKey] = w
		l.Redelivered = true
		to := ledger.ShardOf(l.Account, s.l.cfg.Shards)
		s.legsTo[to] = append(s.legsTo[to], l)
		s.l.stats.Redelivered.Add(1)
	})
	s.sendLegsTo(ctx)
}

// sendLegsTo sends the legs gathered per credit shard, one message per shard.
func (s *shard) sendLegsTo(ctx actor.Context) {
	for to, legs := range s.legsTo {
		if len(legs) > 0 {
			ctx.Send(s.l.pids[to], &legsMessage{legs: append([]ledger.Leg(nil), legs...)})
			s.legsTo[to] = legs[:0]
		}
	}
}
