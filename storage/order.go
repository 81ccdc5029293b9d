package storage

import (
	"cmp"
	"slices"
	"strings"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// keyOrder puts a round's records of one key family at a time in key order for Writer.Commit
// (idx, its answer, is reused by the next family). Ties keep the records' order, so that a key
// written twice in a round (a transfer record written again, a pending mark set and deleted)
// ends with its last write.
type keyOrder struct{ idx []int32 }

// insertionMovesPerRecord bounds the insertion sort's work (records moved, per record)
// before it gives way to a full sort: records nearly in order (a round's postings come in
// time order, a transfer's two of the same time in either account order) cost one pass.
const insertionMovesPerRecord = 2

// all is idx holding 0..n-1.
func (o *keyOrder) all(n int) []int32 {
	o.idx = o.idx[:0]
	for i := range n {
		o.idx = append(o.idx, int32(i))
	}
	return o.idx
}

// some is idx holding the transfers keep takes.
func (o *keyOrder) some(ts []ledger.Transfer, keep func(*ledger.Transfer) bool) []int32 {
	o.idx = indexesOf(o.idx, ts, keep)
	return o.idx
}

// indexesOf is idx holding the indexes of the xs keep takes.
func indexesOf[T any](idx []int32, xs []T, keep func(*T) bool) []int32 {
	idx = idx[:0]
	for i := range xs {
		if keep(&xs[i]) {
			idx = append(idx, int32(i))
		}
	}
	return idx
}

// sortRecords orders idx by c, ties by index: an insertion sort while the records are nearly
// in order, a full sort past insertionMovesPerRecord moves a record.
func sortRecords(idx []int32, c func(i, j int32) int) []int32 {
	less := func(i, j int32) int { return cmp.Or(c(i, j), cmp.Compare(i, j)) }
	moves, movesMax := 0, insertionMovesPerRecord*len(idx)
	for k := 1; k < len(idx); k++ {
		x, j := idx[k], k
		for j > 0 && less(idx[j-1], x) > 0 {
			j--
		}
		if j == k {
			continue
		}
		if moves += k - j; moves > movesMax {
			slices.SortFunc(idx, less)
			return idx
		}
		copy(idx[j+1:k+1], idx[j:k])
		idx[j] = x
	}
	return idx
}

// accounts orders the records of Opened then Frozen (as one index over both) by account id.
func (o *keyOrder) accounts(fx *ledger.Effects) []int32 {
	id := func(r int32) uint64 {
		if int(r) < len(fx.Opened) {
			return fx.Opened[r].ID
		}
		return fx.Frozen[int(r)-len(fx.Opened)].ID
	}
	return sortRecords(o.all(len(fx.Opened)+len(fx.Frozen)), func(i, j int32) int { return cmp.Compare(id(i), id(j)) })
}

// leavesPending reports whether a transfer record is a hold leaving its pending state.
func leavesPending(t *ledger.Transfer) bool {
	switch t.State {
	case ledger.StatePendingPosted, ledger.StatePendingVoided, ledger.StatePendingExpired:
		return true
	}
	return false
}

// bizIDs orders the transfers whose biz id is indexed with this record (it has one, and is
// not a hold leaving its pending state: that was indexed already) by their index keys
// (the biz id's length, the biz id, the transfer id).
func (o *keyOrder) bizIDs(ts []ledger.Transfer) []int32 {
	idx := o.some(ts, func(t *ledger.Transfer) bool { return t.BizID != "" && !leavesPending(t) })
	return sortRecords(idx, func(i, j int32) int {
		a, b := &ts[i], &ts[j]
		return cmp.Or(cmp.Compare(len(a.BizID), len(b.BizID)), strings.Compare(a.BizID, b.BizID), cmp.Compare(a.ID, b.ID))
	})
}

// postings orders the postings by their journal keys (time, account).
func (o *keyOrder) postings(ps []ledger.Posting) []int32 {
	return sortRecords(o.all(len(ps)), func(i, j int32) int {
		return cmp.Or(cmp.Compare(ps[i].Timestamp, ps[j].Timestamp), cmp.Compare(ps[i].Account, ps[j].Account))
	})
}

// legsDone orders the records of LegsDone then LegsForgotten (one index over both) by leg.
func (o *keyOrder) legsDone(fx *ledger.Effects) []int32 {
	key := func(r int32) ledger.LegKey {
		if int(r) < len(fx.LegsDone) {
			return fx.LegsDone[r].LegKey
		}
		return fx.LegsForgotten[int(r)-len(fx.LegsDone)]
	}
	return sortRecords(o.all(len(fx.LegsDone)+len(fx.LegsForgotten)), func(i, j int32) int {
		a, b := key(i), key(j)
		return cmp.Or(cmp.Compare(a.TransferID, b.TransferID), cmp.Compare(a.Kind, b.Kind))
	})
}

// outbox orders the records of LegsOut then OutboxDone (one index over both) by outbox key
// (credit account, sending shard, transfer, kind).
func (o *keyOrder) outbox(fx *ledger.Effects) []int32 {
	leg := func(r int32) *ledger.Leg {
		if int(r) < len(fx.LegsOut) {
			return &fx.LegsOut[r]
		}
		return &fx.OutboxDone[int(r)-len(fx.LegsOut)]
	}
	return sortRecords(o.all(len(fx.LegsOut)+len(fx.OutboxDone)), func(i, j int32) int {
		a, b := leg(i), leg(j)
		return cmp.Or(cmp.Compare(a.Account, b.Account), cmp.Compare(uint16(a.From), uint16(b.From)),
			cmp.Compare(a.TransferID, b.TransferID), cmp.Compare(a.Kind, b.Kind))
	})
}

// pending orders the holds that are made pending or leave that state by transfer id.
func (o *keyOrder) pending(ts []ledger.Transfer) []int32 {
	idx := o.some(ts, func(t *ledger.Transfer) bool { return t.State == ledger.StatePending || leavesPending(t) })
	return sortRecords(idx, func(i, j int32) int { return cmp.Compare(ts[i].ID, ts[j].ID) })
}

// transfers orders the transfer records by id.
func (o *keyOrder) transfers(ts []ledger.Transfer) []int32 {
	return sortRecords(o.all(len(ts)), func(i, j int32) int { return cmp.Compare(ts[i].ID, ts[j].ID) })
}

// orderWriteOrder puts a commit's order writes in the key order of one index at a time for
// OrderWriter.Commit; each answer is valid until the next call.
type orderWriteOrder struct {
	ids, some keyOrder
	days      []txnDay
}

// byID is every write, by order id (order records and the indexes keyed by id).
func (o *orderWriteOrder) byID(ows []OrderWrite) []int32 {
	return sortRecords(o.ids.all(len(ows)), func(i, j int32) int { return cmp.Compare(ows[i].Order.ID, ows[j].Order.ID) })
}

// newByKey is the new orders by their idempotency index key (orderKeyKey's byte order).
func (o *orderWriteOrder) newByKey(ows []OrderWrite) []int32 {
	return sortRecords(o.news(ows, func(*payment.Order) bool { return true }), func(i, j int32) int {
		a, b := ows[i].Order, ows[j].Order
		c := cmp.Compare(a.Form, b.Form)
		if c == 0 && a.Form == payment.Refund {
			c = cmp.Compare(a.Original, b.Original)
		}
		return cmp.Or(c, strings.Compare(a.Key, b.Key))
	})
}

// newByBizID is the new orders with a biz id by their biz id index key (bizKey's byte order:
// the biz id's length, the biz id, the order id).
func (o *orderWriteOrder) newByBizID(ows []OrderWrite) []int32 {
	return sortRecords(o.news(ows, func(o *payment.Order) bool { return o.BizID != "" }), func(i, j int32) int {
		a, b := ows[i].Order, ows[j].Order
		return cmp.Or(cmp.Compare(len(a.BizID), len(b.BizID)), strings.Compare(a.BizID, b.BizID), cmp.Compare(a.ID, b.ID))
	})
}

func (o *orderWriteOrder) news(ows []OrderWrite, keep func(*payment.Order) bool) []int32 {
	o.some.idx = indexesOf(o.some.idx, ows, func(w *OrderWrite) bool { return w.New && keep(w.Order) })
	return o.some.idx
}

// txnDay is one entry of the index of the channel txns orders recorded, by when (txnDayKey).
type txnDay struct {
	channel   string
	at, order uint64
}

// txnDays is the entries of the writes that recorded a channel txn (OrderWrite.Txns), one a
// txn with a time (payment.ChannelTxns), in txnDayKey's byte order: the channel's length, the
// channel, the time, the order.
func (o *orderWriteOrder) txnDays(ows []OrderWrite) []txnDay {
	o.days = o.days[:0]
	for i := range ows {
		if !ows[i].Txns {
			continue
		}
		ord := ows[i].Order
		for _, t := range payment.ChannelTxns(ord) {
			if t.At != 0 {
				o.days = append(o.days, txnDay{channel: ord.Channel, at: t.At, order: ord.ID})
			}
		}
	}
	slices.SortFunc(o.days, func(a, b txnDay) int {
		return cmp.Or(cmp.Compare(len(a.channel), len(b.channel)), strings.Compare(a.channel, b.channel),
			cmp.Compare(a.at, b.at), cmp.Compare(a.order, b.order))
	})
	return o.days
}
