package actors

import (
	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/driver"
)

// reply answers a part and gives back what its shard admitted for it (Ledger.admit): a shard
// counts a request from its admission until its answer, so that a stall (a slow disk, a slow
// credit shard) refuses new requests instead of queueing them without bound.
func reply[E, R any](l *Ledger, shard uint32, p *driver.Part[E, R]) {
	l.admitted[shard].Done(len(p.Events))
	p.Done <- p
}

// tickMessage drives expiry sweeps and re-delivery.
type tickMessage struct{ now uint64 }

// stopMessage asks a shard to finish its round and close its writer.
type stopMessage struct{ done chan<- struct{} }

// drainMessage asks a shard to flush its buffers and to close done once every leg in its
// outbox at that moment has been answered.
type drainMessage struct {
	id   uint64
	done chan struct{}
}

// cancelDrainMessage tells a shard that the caller of drain id stopped waiting (its context
// ended): the shard forgets the drain and the legs it waited for.
type cancelDrainMessage struct{ id uint64 }

// switchDayMessage asks a shard to switch to an accounting day and to close done once the
// switch is durable.
type switchDayMessage struct {
	day  ledger.Day
	done chan struct{}
}
