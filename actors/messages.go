package actors

import "github.com/ledgercore/ledger/ledger"

// accountsPart is the share of one CreateAccounts request that one shard runs.
type accountsPart struct {
	accounts []ledger.Account
	results  []ledger.AccountResult
	index    []int32 // position of each account in the request
	done     chan<- *accountsPart
}

// transfersPart is the share of one CreateTransfers request that one shard runs. The shard
// answers on done once the round holding it is durable and every credit leg it sent was
// answered (a split transfer's reply waits for both legs).
type transfersPart struct {
	transfers   []ledger.Transfer
	results     []ledger.TransferResult
	index       []int32
	done        chan<- *transfersPart
	outstanding int  // legs not yet answered; owned by the shard
	committed   bool // the round holding the part is durable; owned by the shard
}

// legsMessage carries credit legs from the shard that debited to the shard that credits.
type legsMessage struct{ legs []ledger.Leg }

// answersMessage carries a credit shard's answers back to the debit shard.
type answersMessage struct{ answers []ledger.LegResult }

// flushMessage is what a shard sends itself when a round has work: it arrives after every
// message already in the mailbox, so one round takes a whole mailbox's worth.
type flushMessage struct{}

// tickMessage drives expiry sweeps and outbox re-delivery.
type tickMessage struct{ now uint64 }

// stopMessage asks a shard to finish its round and close its writer.
type stopMessage struct{ done chan<- struct{} }
