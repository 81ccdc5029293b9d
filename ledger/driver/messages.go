package driver

import "github.com/ledgercore/ledger/ledger"

// Message is what one shard's driver sends another's (Host.Send, Driver.Receive).
type Message interface{ sender() uint32 }

// Legs carries credit legs from the shard that debited to the shard that credits, and, when
// there are both, the legs whose records that shard may forget (ledger.LegForget). Seq numbers
// the sender's Legs messages to the receiver, from 1 (a message delivered twice is dropped).
// Stamp is the number of forget batches the sender had sent the receiver, this one's included.
type Legs struct {
	From   uint32
	Seq    uint64
	Stamp  uint64
	Legs   []ledger.Leg
	Forget []ledger.LegKey
}

// Answers carries a credit shard's answers back to the debit shard.
type Answers struct {
	From    uint32
	Answers []ledger.LegResult
}

// Forget tells a credit shard which legs' records it may delete; Seq numbers the sender's
// forget batches to this receiver, from 1. It is acknowledged (ForgetAck) and sent again until
// it is, with its number.
type Forget struct {
	From uint32
	Seq  uint64
	Keys []ledger.LegKey
}

// Claim asks an id's shard (ledger.IDShard) to grant new transfer ids to the sender, each under
// the claim number of the part that needs it. Seq numbers the message among the sender's; a
// claim sent again has the same Seq.
type Claim struct {
	From   uint32
	Seq    uint64
	Claims []ClaimRef
}

// ClaimAnswer grants or denies each claimed id (denied: another shard holds it).
type ClaimAnswer struct {
	From   uint32
	Seq    uint64
	Claims []ClaimRef
	Denied []bool
}

// Release gives claims back once the transfers that held them are durable (from then on
// storage answers for those ids), or at once when a grant was not wanted. Seq names the
// release among the sender's, for its acknowledgement.
type Release struct {
	From   uint32
	Seq    uint64
	Claims []ClaimRef
}

// Held asks a shard whether it still wants ids the sender has held for it for long; it gives
// back those it does not (Release).
type Held struct {
	From   uint32
	Claims []ClaimRef
}

// ForgetAck acknowledges a forget batch (Forget, or one carried by Legs), by its number.
type ForgetAck struct {
	From uint32
	Seq  uint64
}

// ReleaseAck acknowledges a Release.
type ReleaseAck struct {
	From uint32
	Seq  uint64
}

// ClaimRef is one id held under one claim: Seq is the number of the claiming part (one per
// part of a request, unique per shard until it restarts).
type ClaimRef struct {
	ID  uint64
	Seq uint64
}

func (m *Legs) sender() uint32        { return m.From }
func (m *Answers) sender() uint32     { return m.From }
func (m *Forget) sender() uint32      { return m.From }
func (m *Claim) sender() uint32       { return m.From }
func (m *ClaimAnswer) sender() uint32 { return m.From }
func (m *Release) sender() uint32     { return m.From }
func (m *ReleaseAck) sender() uint32  { return m.From }
func (m *Held) sender() uint32        { return m.From }
func (m *ForgetAck) sender() uint32   { return m.From }

// Sender is the shard that sent m.
func Sender(m Message) uint32 { return m.sender() }
