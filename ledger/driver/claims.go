package driver

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/ledgercore/ledger/ledger"
)

// Transfer id claims (with more than one shard). Every id has a shard that arbitrates it
// (ledger.IDShard). An id neither cached nor stored is new: before a shard books a transfer
// with it, it claims the id from that shard, which grants it to the first shard that claims
// it and denies it to others until the first gives it back, which it does once the round
// holding the transfer is durable (from then on storage knows the id). So two different
// transfers with one id, sent to two shards at once, cannot both be booked.
//
// A grant is held under a claim: (the holder, the claim's Seq). The arbiter grants a claim
// again whenever it comes again while its holder still holds the id (a claim sent again, or
// delivered twice), never to two shards at once, and holds the id until every claim of its
// holder that took it is given back. A claim that comes again after the id went elsewhere is
// denied; one that comes after it was given back is granted anew, unwanted: the claimer gives
// back a grant it does not hold when the answer reaches it, and an arbiter that has held an id
// for long asks its holder (Held), so a grant whose answer was lost is given back too. Claims
// live in memory: all shards of a node stop and recover together, and what recovery finds in
// storage needs no claim.

type claimState struct {
	// As the ids' shard: id -> its holder and the claims it holds it under.
	claims map[uint64]idClaim
	// As a claimer.
	claimSeq uint64                 // the last claim number used (claims and local holds)
	claimsTo []claimBatch           // claims to send, per shard
	asked    map[uint64]*claimBatch // claims sent and not answered yet, by Seq
	inUse    map[ClaimRef]struct{}  // grants held and not given back yet
	releases [][]ClaimRef           // claims of the gathering round, per shard
	// Releases sent and not acknowledged yet, by their Seq.
	releaseSeq uint64
	unacked    map[uint64]*pendingRelease
}

func (c *claimState) init(shards uint32) {
	c.claims = make(map[uint64]idClaim)
	c.claimsTo = make([]claimBatch, shards)
	c.asked = make(map[uint64]*claimBatch)
	c.inUse = make(map[ClaimRef]struct{})
	c.releases = make([][]ClaimRef, shards)
	c.unacked = make(map[uint64]*pendingRelease)
}

// idClaim is an id's grant to one shard, under one or more of its claims: a shard may book the
// id in a later round while an earlier part's claim is given back (that part failed on the
// request alone), so the id stays held until the last claim lets go.
type idClaim struct {
	holder uint32
	seq    uint64   // the first claim it is held under
	more   []uint64 // the others (rare: the same id in several parts of one shard at once)
	since  uint64   // the tick it was granted, or its holder last asked (Held)
}

func (c *idClaim) holds(seq uint64) bool { return c.seq == seq || slices.Contains(c.more, seq) }

// claimBatch is one claim message: the ids, and the part that claimed each. Each grant goes
// to the one part that asked for it, which gives it back once (its round durable).
type claimBatch struct {
	to    uint32
	seq   uint64 // the message's number, which its answer names
	sent  uint64 // the tick it was last sent at
	refs  []ClaimRef
	parts []*TransfersPart
}

type pendingRelease struct {
	to     uint32
	sent   uint64
	claims []ClaimRef
}

// claim makes sure no other shard books a transfer with one of p's new ids at the same time.
// The part's claims, here and at other shards, are all held under a number of its own: each part
// gives back its own holds, and one part's release leaves another's hold on the same id.
func (d *Driver) claim(p *TransfersPart) {
	for i := range p.Events {
		id := p.Events[i].ID
		if id == 0 {
			continue
		}
		if _, known := d.book.Transfer(id); known {
			continue // stored, or booked here: the book answers exists or exists_with_different_fields
		}
		if p.claimSeq == 0 {
			d.claimSeq++
			p.claimSeq = d.claimSeq
		}
		ref := ClaimRef{ID: id, Seq: p.claimSeq}
		owner := ledger.IDShard(id, d.cfg.Shards)
		if owner != d.cfg.Shard {
			b := &d.claimsTo[owner]
			b.refs, b.parts = append(b.refs, ref), append(b.parts, p)
			p.claims++
			continue
		}
		if !d.takeClaim(id, d.cfg.Shard, ref.Seq) {
			p.denied = append(p.denied, id)
			continue
		}
		d.inUse[ref] = struct{}{}
		p.claimed = append(p.claimed, ref)
	}
}

// sendClaims sends the claims gathered, one message per shard.
func (d *Driver) sendClaims() {
	for to := range d.claimsTo {
		b := d.claimsTo[to]
		if len(b.refs) == 0 {
			continue
		}
		d.claimSeq++
		sent := &claimBatch{to: uint32(to), seq: d.claimSeq, sent: d.ticks, refs: b.refs, parts: b.parts}
		d.asked[sent.seq] = sent
		d.host.Send(uint32(to), &Claim{From: d.cfg.Shard, Seq: sent.seq, Claims: sent.refs})
		d.claimsTo[to] = claimBatch{}
	}
}

// takeClaim grants id to shard from under its claim seq, unless another shard holds it.
func (d *Driver) takeClaim(id uint64, from uint32, seq uint64) bool {
	c, ok := d.claims[id]
	switch {
	case !ok:
		d.claims[id] = idClaim{holder: from, seq: seq, since: d.ticks}
	case c.holder != from:
		return false
	case !c.holds(seq):
		c.more = append(c.more, seq)
		d.claims[id] = c
	}
	return true
}

// unclaim gives back shard from's hold on id under its claim seq; a hold already given back
// (a release delivered twice) changes nothing.
func (d *Driver) unclaim(id uint64, from uint32, seq uint64) {
	c, ok := d.claims[id]
	if !ok || c.holder != from || !c.holds(seq) {
		return
	}
	switch {
	case len(c.more) == 0:
		delete(d.claims, id)
		return
	case c.seq == seq:
		c.seq, c.more = c.more[0], c.more[1:]
	default:
		i := slices.Index(c.more, seq)
		c.more = slices.Delete(c.more, i, i+1)
	}
	d.claims[id] = c
}

// grant answers another shard's claim on ids this shard arbitrates.
func (d *Driver) grant(m *Claim) {
	denied := make([]bool, len(m.Claims))
	for i, c := range m.Claims {
		denied[i] = !d.takeClaim(c.ID, m.From, c.Seq)
	}
	d.host.Send(m.From, &ClaimAnswer{From: d.cfg.Shard, Seq: m.Seq, Claims: m.Claims, Denied: denied})
}

// answered takes the answer to one of this shard's claims and runs the requests no longer
// waiting. A granted id is looked up in storage once more: the shard that held it before may
// have made it durable and given it back in the meantime. A grant for a claim no longer asked
// and not in use (a duplicate delivery after it was given back) is given back at once.
func (d *Driver) answered(m *ClaimAnswer) {
	b, ok := d.asked[m.Seq]
	if !ok {
		var unwanted []ClaimRef
		for i, ref := range m.Claims {
			if _, held := d.inUse[ref]; !held && i < len(m.Denied) && !m.Denied[i] {
				unwanted = append(unwanted, ref) // a grant held is given back with its round
			}
		}
		d.sendRelease(m.From, unwanted)
		return
	}
	if b.to != m.From || !slices.Equal(b.refs, m.Claims) || len(m.Denied) != len(m.Claims) {
		panic(fmt.Sprintf("driver: INVARIANT: shard %d answered claim %d %v, which shard %d sent to %d for %v",
			m.From, m.Seq, m.Claims, d.cfg.Shard, b.to, b.refs))
	}
	delete(d.asked, m.Seq)
	var ready []*TransfersPart
	for i, ref := range b.refs {
		p := b.parts[i]
		if m.Denied[i] {
			p.denied = append(p.denied, ref.ID)
		} else {
			p.claimed = append(p.claimed, ref)
			d.inUse[ref] = struct{}{}
		}
		if p.claims--; p.claims == 0 {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return
	}
	for _, p := range ready {
		d.book.NeedsForTransfers(p.Events, &d.needs)
	}
	d.prefetch()
	now := d.cfg.Now()
	for _, p := range ready {
		d.runPart(now, p)
	}
	d.wake()
}

// release gives back the claims of a durable round.
func (d *Driver) release(releases [][]ClaimRef) {
	for owner, refs := range releases {
		if len(refs) == 0 {
			continue
		}
		for _, c := range refs {
			delete(d.inUse, c)
		}
		if uint32(owner) == d.cfg.Shard {
			for _, c := range refs {
				d.unclaim(c.ID, d.cfg.Shard, c.Seq)
			}
			continue
		}
		d.sendRelease(uint32(owner), refs)
	}
}

func (d *Driver) sendRelease(to uint32, refs []ClaimRef) {
	if len(refs) == 0 {
		return
	}
	d.releaseSeq++
	d.unacked[d.releaseSeq] = &pendingRelease{to: to, sent: d.ticks, claims: refs}
	d.host.Send(to, &Release{From: d.cfg.Shard, Seq: d.releaseSeq, Claims: refs})
}

// released takes claims another shard gives back, and acknowledges them.
func (d *Driver) released(m *Release) {
	for _, c := range m.Claims {
		d.unclaim(c.ID, m.From, c.Seq)
	}
	d.host.Send(m.From, &ReleaseAck{From: d.cfg.Shard, Seq: m.Seq})
}

func (d *Driver) releaseAcked(m *ReleaseAck) {
	if r, ok := d.unacked[m.Seq]; ok && r.to == m.From {
		delete(d.unacked, m.Seq)
	}
}

// askHolders asks the holders of ids held by another shard for heldAskTicks ticks whether they
// still want them (Held): a grant whose answer was lost reached nobody who would give it back.
func (d *Driver) askHolders() {
	age := heldAskFactor * d.cfg.RedeliverAfterTicks
	var ask map[uint32][]ClaimRef
	for id, c := range d.claims {
		if c.holder == d.cfg.Shard || d.ticks-c.since < age {
			continue
		}
		if ask == nil {
			ask = map[uint32][]ClaimRef{}
		}
		ask[c.holder] = append(ask[c.holder], ClaimRef{ID: id, Seq: c.seq})
		for _, seq := range c.more {
			ask[c.holder] = append(ask[c.holder], ClaimRef{ID: id, Seq: seq})
		}
		c.since = d.ticks
		d.claims[id] = c
	}
	for to := uint32(0); to < d.cfg.Shards; to++ {
		if refs := ask[to]; len(refs) > 0 {
			slices.SortFunc(refs, func(x, y ClaimRef) int { return cmp.Or(cmp.Compare(x.ID, y.ID), cmp.Compare(x.Seq, y.Seq)) })
			d.host.Send(to, &Held{From: d.cfg.Shard, Claims: refs})
		}
	}
}

// heldAskFactor: an arbiter asks about a grant held for this many re-delivery periods.
const heldAskFactor = 2

// held answers an arbiter that asks whether this shard still wants grants: those neither held
// by a part nor waiting for their answer are given back.
func (d *Driver) held(m *Held) {
	var unwanted []ClaimRef
	for _, ref := range m.Claims {
		if _, held := d.inUse[ref]; held {
			continue
		}
		if _, waiting := d.asked[ref.Seq]; waiting {
			continue
		}
		unwanted = append(unwanted, ref)
	}
	d.sendRelease(m.From, unwanted)
}

// resendClaims sends again the claims and releases unanswered for RedeliverAfterTicks ticks.
func (d *Driver) resendClaims() {
	resendDue(d, d.asked, cmp.Compare[uint64], func(b *claimBatch) *uint64 { return &b.sent },
		func(_ uint64, b *claimBatch) {
			d.host.Send(b.to, &Claim{From: d.cfg.Shard, Seq: b.seq, Claims: b.refs})
		})
	resendDue(d, d.unacked, cmp.Compare[uint64], func(r *pendingRelease) *uint64 { return &r.sent },
		func(seq uint64, r *pendingRelease) {
			d.host.Send(r.to, &Release{From: d.cfg.Shard, Seq: seq, Claims: r.claims})
		})
}

// resendDue sends again (send) each entry of m last sent RedeliverAfterTicks ticks ago or more,
// and marks it sent now. Map order is random: entries go in key order, so that a run replays.
func resendDue[K comparable, V any](d *Driver, m map[K]V, compare func(x, y K) int, sent func(V) *uint64, send func(K, V)) {
	if len(m) == 0 {
		return
	}
	for _, k := range slices.SortedFunc(maps.Keys(m), compare) {
		v := m[k]
		if at := sent(v); d.ticks-*at >= d.cfg.RedeliverAfterTicks {
			*at = d.ticks
			d.stats.Resent.Add(1)
			send(k, v)
		}
	}
}
