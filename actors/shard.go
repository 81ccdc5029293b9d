package actors

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
	"github.com/ledgercore/ledger/storage"
)

// shard is the actor that runs one shard's protocol (driver.Driver, which owns the shard's
// ledger.Book): it hands the driver its messages one at a time and carries out what the
// driver decides (driver.Host): messages to other shards, replies, the flush timer, and
// rounds to its committer, which writes each as one synced batch and reports it back. While
// a round commits, the next one gathers, and up to driver.RoundsInFlightDefault sealed
// rounds commit at once: the committer writes one round's batch (storage.Writer.Prepare)
// while its syncer commits the round before (Finish), so the fsync and the memtable work
// overlap with writing the next batch and with running the book, and rounds grow with the load.
type shard struct {
	id         uint32
	l          *Ledger
	d          *driver.Driver
	self       *actor.PID
	commits    chan *driver.Round // to the committer; capacity RoundsInFlightMax
	syncs      chan prepared      // from the committer to its syncer; capacity 1
	done       chan struct{}
	flushTimer *time.Timer
	stopped    bool // after stopMessage: everything else is dropped (legs wait in outboxes)
}

// committedMessage tells the shard that a round's commit returned.
type committedMessage struct{ r *driver.Round }

// wakeMessage is what a shard sends itself when the driver has work for a round (Host.Wake):
// it arrives after every message already in the mailbox, so one round takes a whole
// mailbox's worth.
type wakeMessage struct{}

// recoverMessage tells a shard that every peer is up: re-send the outbox loaded from storage.
type recoverMessage struct{}

// hotFlushMessage is what a shard's flush timer sends it.
type hotFlushMessage struct{}

func newShard(l *Ledger, id uint32, book *ledger.Book) *shard {
	s := &shard{id: id, l: l, commits: make(chan *driver.Round, driver.RoundsInFlightMax),
		syncs: make(chan prepared, 1), done: make(chan struct{})}
	s.d = driver.New(driver.Config{Shard: id, Shards: l.cfg.Shards, Now: l.cfg.Now,
		RedeliverAfterTicks: l.cfg.RedeliverAfterTicks, HotFlushInterval: l.cfg.HotFlushInterval,
		HotBufferLegsMax: l.cfg.HotBufferLegsMax, Counters: &l.stats.Counters, HotFlushLegs: l.cfg.HotFlushLegs,
		PieceEvents: l.cfg.PieceEvents, RoundsInFlight: l.cfg.RoundsInFlight},
		s, l.store.Live(), book)
	return s
}

// committer writes the shard's rounds to their batches in order (storage.Writer.Prepare) and
// hands each to the syncer, which commits them in that order; at most two are prepared and
// not committed (the writer's batches). It owns the shard's storage writer, and closes it once
// the syncer is done.
func (s *shard) committer(w *storage.Writer) {
	synced := make(chan struct{})
	go s.syncer(w, synced)
	for r := range s.commits {
		x := prepared{r: r, start: time.Now()}
		if s.l.cfg.Events != nil {
			x.mark = s.l.cfg.Events.Begin()
		}
		x.p, x.err = w.Prepare(r.Effects, r.Clock)
		s.syncs <- x
	}
	close(s.syncs)
	<-synced
	if err := w.Close(); err != nil {
		s.l.fatal(fmt.Errorf("shard %d: close writer: %w", s.id, err))
	}
	close(s.done)
}

// prepared is a round the committer wrote to its batch, on its way to the syncer.
type prepared struct {
	r     *driver.Round
	p     *storage.Prepared // nil when Prepare failed (err)
	err   error
	mark  uint64 // the event sequencer's Begin, before the round's commit started
	start time.Time
}

// syncer commits the rounds the committer prepared, in order, and reports each back to the
// shard once it is durable.
func (s *shard) syncer(w *storage.Writer, done chan<- struct{}) {
	defer close(done)
	for x := range s.syncs {
		r := x.r
		if r.Err = x.err; r.Err == nil {
			r.Err = w.Finish(x.p)
		}
		if r.Err == nil {
			// Before anything of the round leaves (close, committedMessage): whatever it
			// causes on another shard gets a later sequence.
			publish(s.l.cfg.Events, x.p.Round(), x.mark, r.Effects)
		}
		s.l.cfg.CommitSeconds.Observe(time.Since(x.start).Seconds())
		s.l.cfg.CommitPostings.Observe(float64(len(r.Effects.Postings)))
		close(r.Durable)
		s.l.system.Root.Send(s.self, committedMessage{r: r})
	}
}

// Receive hands one message to the driver. A panic is a broken invariant: the shard's memory
// can no longer be trusted, so the ledger's fatal handler stops the process, which recovers
// from storage on restart; Proto.Actor's supervisor never gets to restart the shard empty.
// A failed commit stops the shard the same way.
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
	case *driver.TransfersPart:
		s.d.Transfers(m)
	case *driver.AccountsPart:
		s.d.Accounts(m)
	case driver.Message:
		s.d.Receive(m)
	case wakeMessage:
		s.d.Wake()
	case committedMessage:
		s.committed(m.r)
	case tickMessage:
		s.d.Tick(m.now)
	case recoverMessage:
		s.d.Recover()
	case hotFlushMessage:
		s.d.HotFlush()
	case switchDayMessage:
		s.d.SwitchDay(m.day, func() { close(m.done) })
	case drainMessage:
		s.d.Drain(m.id, func() { close(m.done) })
	case cancelDrainMessage:
		s.d.CancelDrain(m.id)
	case *stopMessage:
		if s.flushTimer != nil {
			s.flushTimer.Stop()
		}
		s.d.Stop()
		s.waitRounds()
		close(s.commits)
		<-s.done
		s.stopped = true
		close(m.done)
		return
	case *actor.Started, *actor.Stopping, *actor.Stopped, *actor.Restarting:
		return
	default:
		s.l.stats.Unexpected.Add(1)
		return
	}
	s.waitRounds()
}

func (s *shard) committed(r *driver.Round) {
	if err := s.d.Committed(r); err != nil {
		s.l.fatal(fmt.Errorf("ledger stopped: %w", err))
	}
}

// waitRounds completes the rounds the driver must see durable before anything else
// (driver.Driver.Wait).
func (s *shard) waitRounds() {
	for r := s.d.Wait(); r != nil; r = s.d.Wait() {
		<-r.Durable
		s.committed(r)
	}
}

// The driver's host (driver.Host).

func (s *shard) Send(to uint32, m driver.Message) { s.l.system.Root.Send(s.l.pids[to], m) }

func (s *shard) Commit(r *driver.Round) { s.commits <- r }

func (s *shard) Durable(r *driver.Round) bool { return r.Closed() }

func (s *shard) Wake() { s.l.system.Root.Send(s.self, wakeMessage{}) }

func (s *shard) ArmHotFlush(d time.Duration) {
	if s.flushTimer == nil {
		self, system := s.self, s.l.system
		s.flushTimer = time.AfterFunc(d, func() { system.Root.Send(self, hotFlushMessage{}) })
		return
	}
	s.flushTimer.Reset(d)
}

func (s *shard) ReplyAccounts(p *driver.AccountsPart) { reply(s.l, s.id, p) }

func (s *shard) ReplyTransfers(p *driver.TransfersPart) { reply(s.l, s.id, p) }
