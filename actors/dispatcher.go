package actors

// ownGoroutine is a Proto.Actor dispatcher that runs one actor's mailbox on a goroutine of
// its own for the actor's whole life. Proto.Actor's default starts a new goroutine each time
// a mailbox wakes up, and a shard's calls into Pebble need a deep stack, which every new
// goroutine grew (copied) again: 11% of the CPU with one transfer per request.
//
// A mailbox schedules itself only when it goes from idle to running, so at most one run is
// ever waiting here: the channel's one slot never blocks a sender for long.
type ownGoroutine struct {
	work chan func()
	done chan struct{}
}

// mailboxThroughput is how many messages a mailbox handles before it yields the processor
// (Proto.Actor's default).
const mailboxThroughput = 300

func newOwnGoroutine() *ownGoroutine {
	d := &ownGoroutine{work: make(chan func(), 1), done: make(chan struct{})}
	go d.loop()
	return d
}

func (d *ownGoroutine) loop() {
	for {
		select {
		case fn := <-d.work:
			fn()
		case <-d.done:
			return
		}
	}
}

// Schedule runs fn on the goroutine; after close it drops fn (the actor is stopped).
func (d *ownGoroutine) Schedule(fn func()) {
	select {
	case d.work <- fn:
	case <-d.done:
	}
}

// Throughput is the number of messages per run.
func (d *ownGoroutine) Throughput() int { return mailboxThroughput }

func (d *ownGoroutine) close() { close(d.done) }
