package actors

import (
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/storage"
)

// shard is the actor that owns one shard's Book. It is thin: it gathers a mailbox's worth of
// work into one round, asks storage for what the book needs, runs the book, and hands the
// round to its committer, which writes it as one synced batch. Replies, legs and answers go
// out only when the committer reports the round durable. While one round commits, the next
// one gathers (a pipeline of depth one): the fsync and the memtable work overlap with
// running the book, and rounds grow with the load.
type shard struct {
	id      uint32
	l       *Ledger
	book    *ledger.Book
	view    *storage.Reader // the live store: see storage's "Durable reads"
	commits chan *round     // to the committer; capacity 1
	done    chan struct{}

	needs    ledger.Needs
	fx       *ledger.Effects // the round being gathered
	spare    *ledger.Effects // the other buffer, while not committing
	accounts []*accountsPart
	parts    []*transfersPart // run, in the round being gathered
	arrived  []*transfersPart // received, not yet run: run together at the next flushMessage
	inflight *round           // the round being committed; nil when none
	waiting  map[ledger.LegKey]waiter
	queued   bool // a flushMessage is in the mailbox
	stopped  bool // after stopMessage: everything else is dropped (legs wait in outboxes)
	ticks    uint64
	gather   uint64 // the number of the round being gathered
	durable  uint64 // the number of the last round known durable
	legsTo   [][]ledger.Leg
	answerTo [][]ledger.LegResult
	forgetTo [][]ledger.LegKey // forgets of the round being completed, per credit shard

	// Transfer id claims (with more than one shard): see claim.
	claims   map[uint64]idClaim // as the ids' shard: id -> the shard holding it
	claimsTo []claimBatch       // claims to send, per shard
	asked    [][]claimBatch     // claims sent and not answered yet, per shard, in the order sent
	releases [][]uint64         // claims of the gathering round, per shard

	// Hot-account buffers (hot.go).
	buffers      map[uint64][]ledger.Leg // durable buffered legs not yet sent, per credit account
	spareBuffers [][]ledger.Leg          // emptied buffers, to use again (spareBuffersMax)
	bufferedLegs int                     // legs in buffers
	flushArmed   bool                    // flushTimer will send a hotFlushMessage
	flushTimer   *time.Timer
	drains       []*drainWait
}

// round is one sealed round on its way to storage.
type round struct {
	seq      uint64
	releases [][]uint64 // claims to give back once the round is durable, per shard
	fx       *ledger.Effects
	clock    uint64
	accounts []*accountsPart
	parts    []*transfersPart
	err      error
	durable  chan struct{} // closed by the committer after the commit returned
	handled  bool          // its completion was processed (by waiting on durable)
}

// committedMessage tells the shard that a round's commit returned.
type committedMessage struct{ r *round }

// waiter is a sent leg whose answer a request (or, for legs from recovery and expiry,
// nobody) waits for.
type waiter struct {
	part  *transfersPart
	index int32
	sent  uint64 // the tick it was last sent at
	round uint64 // the round that made it: it may be re-sent only once that round is durable
	first int64  // when it was first sent (Unix ns; for the age metric)
	// buffered: a leg for a hot account that its buffer has not sent yet; nobody waits for it
	// and it is not re-sent until it is.
	buffered bool
	// repeats: transfers that repeated the leg's transfer while the leg was unanswered
	// (ledger.LegAwait); each answers what the first copy answers, when it does.
	repeats []repeat
}

// repeat is one transfer of a request that waits for another transfer's leg.
type repeat struct {
	part  *transfersPart
	index int32
}

func newShard(l *Ledger, id uint32, book *ledger.Book) *shard {
	return &shard{id: id, l: l, book: book, view: l.store.Live(), commits: make(chan *round, 1), gather: 1,
		done: make(chan struct{}), fx: &ledger.Effects{}, spare: &ledger.Effects{},
		waiting: make(map[ledger.LegKey]waiter), legsTo: make([][]ledger.Leg, l.cfg.Shards),
		answerTo: make([][]ledger.LegResult, l.cfg.Shards), forgetTo: make([][]ledger.LegKey, l.cfg.Shards), claims: make(map[uint64]idClaim),
		claimsTo: make([]claimBatch, l.cfg.Shards), asked: make([][]claimBatch, l.cfg.Shards),
		releases: make([][]uint64, l.cfg.Shards), buffers: make(map[uint64][]ledger.Leg)}
}

// committer writes the shard's rounds in order, one at a time, and reports each back to the
// shard. It owns the shard's storage writer.
func (s *shard) committer(self *actor.PID, w *storage.Writer) {
	defer close(s.done)
	for r := range s.commits {
		start := time.Now()
		r.err = w.Commit(r.fx, r.clock)
		s.l.cfg.CommitSeconds.Observe(time.Since(start).Seconds())
		s.l.cfg.CommitPostings.Observe(float64(len(r.fx.Postings)))
		close(r.durable)
		s.l.system.Root.Send(self, committedMessage{r: r})
	}
	if err := w.Close(); err != nil {
		s.l.fatal(fmt.Errorf("shard %d: close writer: %w", s.id, err))
	}
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
		s.arrived = append(s.arrived, m)
		s.queueFlush(ctx)
	case *accountsPart:
		s.book.CreateAccounts(s.l.cfg.Now(), m.events, m.results, s.fx)
		s.accounts = append(s.accounts, m)
		s.queueFlush(ctx)
	case *legsMessage:
		s.book.NeedsForLegs(m.legs, &s.needs)
		s.prefetch()
		s.book.ApplyLegs(s.l.cfg.Now(), m.legs, s.fx)
		if len(m.forget) > 0 {
			s.book.ForgetLegs(m.forget, s.fx)
		}
		s.queueFlush(ctx)
	case *answersMessage:
		s.book.ApplyLegResults(s.l.cfg.Now(), m.answers, s.fx)
		s.queueFlush(ctx)
	case *forgetMessage:
		s.book.ForgetLegs(m.keys, s.fx)
		s.queueFlush(ctx)
	case flushMessage:
		s.queued = false
		s.runArrived(ctx)
		if s.inflight == nil {
			s.seal()
		}
	case committedMessage:
		if !m.r.handled {
			s.completed(ctx, m.r)
		}
	case tickMessage:
		s.tick(ctx, m.now)
	case recoverMessage:
		s.redeliver(ctx, 0)
	case *claimMessage:
		s.grant(ctx, m)
	case *claimAnswer:
		s.answered(ctx, m)
	case hotFlushMessage:
		s.flushBuffers(ctx, FlushInterval)
		s.l.buffered[s.id].Store(int64(s.bufferedLegs))
	case drainMessage:
		s.drainLegs(ctx, m)
		s.l.buffered[s.id].Store(int64(s.bufferedLegs))
	case *releaseMessage:
		for _, id := range m.ids {
			s.unclaim(id, m.from)
		}
	case *stopMessage:
		if s.flushTimer != nil {
			s.flushTimer.Stop()
		}
		s.drain(ctx)
		close(s.commits)
		<-s.done
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

// runArrived runs the transfer requests that arrived since the last flushMessage, after one
// look-up in storage for all of them. With more than one shard, a request whose new transfer
// ids belong to other shards waits for their claims to be granted (see claim).
func (s *shard) runArrived(ctx actor.Context) {
	if len(s.arrived) == 0 {
		return
	}
	for _, p := range s.arrived {
		s.book.NeedsForTransfers(p.events, &s.needs)
	}
	s.prefetch()
	now := s.l.cfg.Now()
	for _, p := range s.arrived {
		if s.l.cfg.Shards > 1 {
			s.claim(p)
		}
		if p.claims == 0 {
			s.runPart(now, p)
		}
	}
	clear(s.arrived)
	s.arrived = s.arrived[:0]
	for to, b := range s.claimsTo {
		if len(b.ids) > 0 {
			s.asked[to] = append(s.asked[to], b)
			ctx.Send(s.l.pids[to], &claimMessage{from: s.id, ids: b.ids})
			s.claimsTo[to] = claimBatch{}
		}
	}
}

// claimBatch is one claim message: the ids, and the part that claimed each. Each grant goes
// to the one part that asked for it, which gives it back once (its round durable). An id's
// shard answers one shard's claim messages in the order they were sent (Proto.Actor keeps the
// order of one sender's messages), so answers are matched to batches in order.
type claimBatch struct {
	ids   []uint64
	parts []*transfersPart
}

func (s *shard) runPart(now uint64, p *transfersPart) {
	for _, id := range p.denied {
		s.book.LoadClaimedElsewhere(id)
	}
	before, awaits := len(s.fx.LegsOut), len(s.fx.Awaits)
	s.book.CreateTransfers(now, p.events, p.results, s.fx)
	s.watchLegs(before, p)
	s.watchRepeats(awaits, p)
	for _, id := range p.denied {
		s.book.ForgetClaimedElsewhere(id)
	}
	s.parts = append(s.parts, p)
	for _, id := range p.claimed {
		owner := ledger.IDShard(id, s.l.cfg.Shards)
		s.releases[owner] = append(s.releases[owner], id)
	}
}

// claim makes sure no other shard books a transfer with one of p's new ids at the same time.
// Every id has a shard that arbitrates it (ledger.IDShard). An id neither cached nor stored
// is new: its shard grants it to the first shard that claims it, and denies it to others
// until the first gives it back, which it does once the round holding the transfer is
// durable (from then on storage knows the id). Claims live in memory: all shards of a node
// stop and recover together, and what recovery finds in storage needs no claim.
func (s *shard) claim(p *transfersPart) {
	for i := range p.events {
		id := p.events[i].ID
		if id == 0 {
			continue
		}
		if _, known := s.book.Transfer(id); known {
			continue // stored, or booked here: the book answers exists or exists_with_different_fields
		}
		owner := ledger.IDShard(id, s.l.cfg.Shards)
		if owner != s.id {
			b := &s.claimsTo[owner]
			b.ids, b.parts = append(b.ids, id), append(b.parts, p)
			p.claims++
			continue
		}
		if !s.takeClaim(id, s.id) {
			p.denied = append(p.denied, id)
			continue
		}
		p.claimed = append(p.claimed, id)
	}
}

// idClaim is an id's grant to one shard, counted: each part that claimed it holds it until its
// round is durable, and a shard may book the id in a later round while an earlier part's claim
// is given back (that part failed on the request alone), so the id stays held until the last
// part lets go.
type idClaim struct {
	holder uint32
	parts  int
}

// takeClaim grants id to shard from, unless another shard holds it.
func (s *shard) takeClaim(id uint64, from uint32) bool {
	c, ok := s.claims[id]
	if ok && c.holder != from {
		return false
	}
	s.claims[id] = idClaim{holder: from, parts: c.parts + 1}
	return true
}

// unclaim gives back one part's claim on id.
func (s *shard) unclaim(id uint64, from uint32) {
	c, ok := s.claims[id]
	switch {
	case !ok || c.holder != from:
		panic(fmt.Sprintf("actors: INVARIANT: shard %d gives back id %d, held by %+v (%v)", from, id, c, ok))
	case c.parts == 1:
		delete(s.claims, id)
	default:
		c.parts--
		s.claims[id] = c
	}
}

// grant answers another shard's claims on ids this shard arbitrates.
func (s *shard) grant(ctx actor.Context, m *claimMessage) {
	denied := make([]bool, len(m.ids))
	for i, id := range m.ids {
		denied[i] = !s.takeClaim(id, m.from)
	}
	ctx.Send(s.l.pids[m.from], &claimAnswer{from: s.id, ids: m.ids, denied: denied})
}

// answered takes the answers to this shard's claims and runs the requests no longer waiting.
// A granted id is looked up in storage once more: the shard that held it before may have
// made it durable and given it back in the meantime.
func (s *shard) answered(ctx actor.Context, m *claimAnswer) {
	q := s.asked[m.from]
	if len(q) == 0 || !slices.Equal(q[0].ids, m.ids) {
		panic(fmt.Sprintf("actors: INVARIANT: shard %d answered claims %v that shard %d did not ask next", m.from, m.ids, s.id))
	}
	b := q[0]
	q[0] = claimBatch{}
	s.asked[m.from] = q[1:]
	var ready []*transfersPart
	for i, id := range b.ids {
		p := b.parts[i]
		if m.denied[i] {
			p.denied = append(p.denied, id)
		} else {
			p.claimed = append(p.claimed, id)
		}
		if p.claims--; p.claims == 0 {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return
	}
	for _, p := range ready {
		s.book.NeedsForTransfers(p.events, &s.needs)
	}
	s.prefetch()
	now := s.l.cfg.Now()
	for _, p := range ready {
		s.runPart(now, p)
	}
	s.queueFlush(ctx)
}

// watchLegs records the legs the last book call sent, so that their answers reach the
// request waiting on them and unanswered ones are sent again.
func (s *shard) watchLegs(before int, p *transfersPart) {
	if before == len(s.fx.LegsOut) {
		return
	}
	now := time.Now().UnixNano()
	for _, l := range s.fx.LegsOut[before:] {
		w := waiter{index: l.Event, sent: s.ticks, round: s.gather, first: now, buffered: l.Buffered}
		if p != nil && l.Event >= 0 && !l.Buffered {
			w.part = p
			p.outstanding++
		}
		s.waiting[l.LegKey] = w
	}
}

// watchRepeats records the transfers of the last book call that repeat one whose leg is
// unanswered: they answer with it.
func (s *shard) watchRepeats(before int, p *transfersPart) {
	for _, a := range s.fx.Awaits[before:] {
		w := s.waiting[a.LegKey]
		w.repeats = append(w.repeats, repeat{part: p, index: a.Event})
		s.waiting[a.LegKey] = w
		p.outstanding++
	}
}

// prefetch loads from storage what the book said it needs. A read error is fatal: the
// shard cannot tell absent from unreadable.
func (s *shard) prefetch() {
	s.must(s.view.Transfers(s.needs.Transfers, s.book.LoadTransfer))
	for _, id := range s.needs.Remote {
		info, found, err := s.view.AccountInfo(id)
		s.must(err)
		if found {
			s.book.LoadRemote(info)
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

// seal ends the round being gathered and hands it to the committer, if it has anything.
func (s *shard) seal() {
	if s.fx.Empty() && len(s.accounts) == 0 && len(s.parts) == 0 {
		return
	}
	s.fx.Freeze()
	r := &round{seq: s.gather, fx: s.fx, clock: s.book.Clock(), accounts: s.accounts, parts: s.parts,
		durable: make(chan struct{}), releases: s.releases}
	s.releases = make([][]uint64, s.l.cfg.Shards)
	s.gather++
	s.fx, s.spare = s.spare, nil
	s.accounts, s.parts = nil, nil
	s.inflight = r
	s.commits <- r
}

// completed handles a durable round: send its legs and answers, hand answered legs to the
// requests that wait on them, reply, then seal the next round (or, when there is none, let
// the book trim itself: everything it knows is durable).
func (s *shard) completed(ctx actor.Context, r *round) {
	r.handled = true
	s.inflight = nil
	s.must(r.err)
	s.durable = r.seq
	fx := r.fx
	s.l.stats.Postings.Add(uint64(len(fx.Postings)))
	s.l.stats.Commits.Add(1)
	for _, f := range fx.Forget {
		s.forgetTo[f.To] = append(s.forgetTo[f.To], f.LegKey)
	}
	s.sendLegs(ctx, fx) // takes the forgets bound where legs go anyway
	s.sendAnswers(ctx, fx)
	s.sendForgets(ctx)
	s.release(ctx, r.releases)
	for _, a := range fx.Answered {
		if len(s.drains) > 0 {
			s.answeredDrain(a.LegKey)
		}
		s.answerWaiters(a)
	}
	for _, p := range r.accounts {
		reply(s.l, s.id, p)
	}
	for _, p := range r.parts {
		p.committed = true
		if p.outstanding == 0 {
			reply(s.l, s.id, p)
		}
	}
	fx.Reset()
	s.spare = fx
	s.l.outbox[s.id].Store(int64(s.book.OutboxLen()))
	s.seal()
	switch {
	case s.inflight == nil:
		s.book.Trim()
	case s.book.TrimNeeded():
		// Under a load that never pauses: wait for the round just sealed; nothing gathers
		// meanwhile, so completing it finds the shard quiet and trims.
		r := s.inflight
		<-r.durable
		s.completed(ctx, r)
	}
}

// answerWaiters hands a durable answer to the request that sent the leg (a refusal becomes its
// transfer's result) and to those that repeated its transfer meanwhile (they answered exists,
// or now the same refusal).
func (s *shard) answerWaiters(a ledger.LegResult) {
	w, ok := s.waiting[a.LegKey]
	if !ok {
		return
	}
	delete(s.waiting, a.LegKey)
	if w.part != nil {
		s.legAnswered(w.part, w.index, a.Result)
	}
	for _, r := range w.repeats {
		s.legAnswered(r.part, r.index, a.Result)
	}
}

func (s *shard) legAnswered(p *transfersPart, index int32, r ledger.TransferResult) {
	if r != ledger.ResultOK {
		p.results[index] = r
	}
	p.outstanding--
	if p.committed && p.outstanding == 0 {
		reply(s.l, s.id, p)
	}
}

// release gives back the claims of a durable round.
func (s *shard) release(ctx actor.Context, releases [][]uint64) {
	for owner, ids := range releases {
		if len(ids) == 0 {
			continue
		}
		if uint32(owner) == s.id {
			for _, id := range ids {
				s.unclaim(id, s.id)
			}
			continue
		}
		ctx.Send(s.l.pids[owner], &releaseMessage{from: s.id, ids: ids})
	}
}

// drain commits everything gathered and waits until it is durable (on stop).
func (s *shard) drain(ctx actor.Context) {
	s.runArrived(ctx)
	for {
		if s.inflight != nil {
			r := s.inflight
			<-r.durable
			s.completed(ctx, r)
			continue
		}
		s.seal()
		if s.inflight == nil {
			return
		}
	}
}

func (s *shard) sendLegs(ctx actor.Context, fx *ledger.Effects) {
	for _, l := range fx.LegsOut {
		if l.Buffered {
			s.buffer(ctx, l)
			continue
		}
		to := ledger.ShardOf(l.Account, s.l.cfg.Shards)
		s.legsTo[to] = append(s.legsTo[to], l)
	}
	s.flushAlong()
	s.sendLegsTo(ctx)
	s.l.buffered[s.id].Store(int64(s.bufferedLegs))
}

func (s *shard) sendAnswers(ctx actor.Context, fx *ledger.Effects) {
	for _, r := range fx.LegsDone {
		s.answerTo[r.From] = append(s.answerTo[r.From], r)
	}
	for to, answers := range s.answerTo {
		if len(answers) > 0 {
			ctx.Send(s.l.pids[to], &answersMessage{answers: append([]ledger.LegResult(nil), answers...)})
			s.answerTo[to] = answers[:0]
		}
	}
}

// sendForgets tells credit shards which legs' answers a durable round took, for those that
// did not go with legs (sendLegsTo).
func (s *shard) sendForgets(ctx actor.Context) {
	for to, keys := range s.forgetTo {
		if len(keys) > 0 {
			ctx.Send(s.l.pids[to], &forgetMessage{keys: append([]ledger.LegKey(nil), keys...)})
			s.forgetTo[to] = keys[:0]
		}
	}
}

// tick sweeps expired holds and re-sends legs unanswered for too long.
func (s *shard) tick(ctx actor.Context, now uint64) {
	s.ticks++
	before := len(s.fx.LegsOut)
	s.book.Expire(now, s.fx)
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
		if ok && (s.ticks-w.sent < age || w.round > s.durable || w.buffered) {
			// answered soon, or its debit is not durable yet (never credit before that), or
			// its buffer has not sent it yet
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
			m := &legsMessage{legs: append([]ledger.Leg(nil), legs...)}
			if keys := s.forgetTo[to]; len(keys) > 0 {
				m.forget = append([]ledger.LegKey(nil), keys...)
				s.forgetTo[to] = keys[:0]
			}
			ctx.Send(s.l.pids[to], m)
			s.legsTo[to] = legs[:0]
		}
	}
}
