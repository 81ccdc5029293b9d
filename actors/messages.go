package actors

import "github.com/ledgercore/ledger/ledger"

// part is the share of one request that one shard runs: its events, their positions in the
// request, and their results. The shard answers on done once the round holding the part is
// durable and, for transfers, every credit leg it sent was answered (a split transfer's reply
// waits for both legs).
type part[E, R any] struct {
	events      []E
	results     []R
	index       []int32 // position of each event in the request
	done        chan<- *part[E, R]
	outstanding int      // legs not yet answered; owned by the shard
	committed   bool     // the round holding the part is durable; owned by the shard
	claims      int      // transfer ids claimed from other shards and not yet answered
	claimed     []uint64 // ids this part holds claims on, released once its round is durable
	denied      []uint64 // ids another shard holds: this part's transfers with them answer id_in_flight
}

// reply answers a part and gives back what its shard admitted for it (Ledger.admit): a shard
// counts a request from its admission until its answer, so that a stall (a slow disk, a slow
// credit shard) refuses new requests instead of queueing them without bound.
func reply[E, R any](l *Ledger, shard uint32, p *part[E, R]) {
	l.admitted[shard].requests.Add(-1)
	l.admitted[shard].events.Add(-int64(len(p.events)))
	p.done <- p
}

type (
	accountsPart  = part[ledger.Account, ledger.AccountResult]
	transfersPart = part[ledger.Transfer, ledger.TransferResult]
)

// legsMessage carries credit legs from the shard that debited to the shard that credits,
// and the legs whose records that shard may forget (ledger.LegForget), when there are both.
type legsMessage struct {
	legs   []ledger.Leg
	forget []ledger.LegKey
}

// answersMessage carries a credit shard's answers back to the debit shard.
type answersMessage struct{ answers []ledger.LegResult }

// forgetMessage tells a credit shard which legs' records it may delete (ledger.LegForget).
type forgetMessage struct{ keys []ledger.LegKey }

// flushMessage is what a shard sends itself when a round has work: it arrives after every
// message already in the mailbox, so one round takes a whole mailbox's worth.
type flushMessage struct{}

// tickMessage drives expiry sweeps and outbox re-delivery.
type tickMessage struct{ now uint64 }

// stopMessage asks a shard to finish its round and close its writer.
type stopMessage struct{ done chan<- struct{} }

// claimMessage asks an id's shard (ledger.IDShard) to grant new transfer ids to the sender.
type claimMessage struct {
	from uint32
	ids  []uint64
}

// claimAnswer grants or denies each claimed id (denied: another shard holds it).
type claimAnswer struct {
	from   uint32
	ids    []uint64
	denied []bool
}

// releaseMessage gives claims back once the transfers that held them are durable (from then
// on storage answers for those ids).
type releaseMessage struct {
	from uint32
	ids  []uint64
}
