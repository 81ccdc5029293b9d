package storage

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ledgercore/ledger/ledger"
	"github.com/ledgercore/ledger/ledger/payment"
)

// Key prefixes of the payment layer (see encoding.go for the ledger's).
const (
	prefixOrder    = 'O' // O id                          -> order
	prefixOrderKey = 'K' // K form [original] key         -> order id (the idempotency index)
	prefixOrderBiz = 'B' // B len(biz) biz id             -> (empty) the order has this biz id
	prefixActive   = 'A' // A shard id                    -> (empty) the order still waits for something
	prefixOpen     = 'X' // X id                          -> (empty) the order has an exception not resolved
	prefixExcepted = 'Y' // Y id                          -> (empty) the order has (had) exceptions
	prefixOrderSeq = 'S' // S shard                       -> the shard's last order id
)

// orderKeyKey is the idempotency index key of a request: a refund's key is scoped to its
// original payment (refunds are served by the original's shard).
func orderKeyKey(dst []byte, form payment.Form, original uint64, key string) []byte {
	dst = append(dst[:0], prefixOrderKey, byte(form))
	if form == payment.Refund {
		dst = be.AppendUint64(dst, original)
	}
	return append(dst, key...)
}

// bizKey is prefix and a length-prefixed string (a biz id, a channel's name): no such key is
// a prefix of another's.
func bizKey(dst []byte, prefix byte, biz string) []byte {
	dst = append(dst[:0], prefix, byte(len(biz)))
	return append(dst, biz...)
}

func activeKey(dst []byte, shard uint32, id uint64) []byte {
	dst = append(dst[:0], prefixActive)
	dst = be.AppendUint16(dst, uint16(shard))
	return be.AppendUint64(dst, id)
}

func orderSeqKey(dst []byte, shard uint32) []byte {
	dst = append(dst[:0], prefixOrderSeq)
	return be.AppendUint16(dst, uint16(shard))
}

func appendString(dst []byte, s string) []byte {
	dst = av(dst, uint64(len(s)))
	return append(dst, s...)
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.bad || n > uint64(len(r.b)) {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Versions of the order record: 2 adds, at its end, when the order and its records took their
// channel txns (TxnAt, RefundAt); a record of version 1 reads them as 0.
const (
	orderVersionLegacy = 1
	orderVersion       = 2
)

func encodeOrder(dst []byte, o *payment.Order) []byte {
	dst = append(dst[:0], orderVersion)
	dst = appendString(dst, o.Key)
	dst = appendString(dst, o.BizID)
	dst = av(dst, uint64(o.Form))
	dst = av(dst, uint64(o.Ledger))
	dst = av(dst, o.Amount)
	dst = av(dst, o.From)
	dst = av(dst, o.To)
	dst = appendString(dst, o.Channel)
	dst = appendString(dst, o.ChannelAccount)
	dst = av(dst, o.Original)
	dst = appendString(dst, o.OriginalTxn)
	dst = av(dst, uint64(len(o.Instruments)))
	for _, in := range o.Instruments {
		dst = av(dst, uint64(in.Kind))
		dst = av(dst, in.Amount)
		dst = av(dst, in.Account)
		dst = av(dst, in.Refunded)
	}
	dst = av(dst, uint64(o.State))
	dst = av(dst, uint64(o.Stage))
	dst = av(dst, uint64(o.Outcome))
	dst = av(dst, uint64(o.Result))
	dst = av(dst, uint64(o.Ledgered))
	dst = av(dst, o.Done)
	dst = av(dst, o.Refunded)
	dst = appendString(dst, o.Txn)
	dst = av(dst, o.Paid)
	dst = av(dst, o.SentAt)
	dst = av(dst, uint64(o.Sends))
	dst = av(dst, uint64(o.Queries))
	dst = av(dst, o.Next)
	flagged := uint64(0)
	if o.Flagged {
		flagged = 1
	}
	dst = av(dst, flagged)
	dst = av(dst, uint64(o.Dropped))
	dst = av(dst, o.Created)
	dst = av(dst, o.Updated)
	dst = av(dst, uint64(o.Version))
	dst = av(dst, uint64(len(o.Exceptions)))
	for i := range o.Exceptions {
		x := &o.Exceptions[i]
		dst = av(dst, uint64(x.Kind))
		dst = av(dst, uint64(x.Step))
		dst = appendString(dst, x.Txn)
		dst = av(dst, x.Amount)
		dst = appendString(dst, x.Note)
		dst = av(dst, uint64(x.Attempt))
		dst = appendString(dst, x.Refund)
		dst = av(dst, x.SentAt)
		dst = av(dst, uint64(x.Queries))
		dst = av(dst, x.Next)
		dst = av(dst, x.Created)
		dst = av(dst, x.Updated)
	}
	// Version 2: when the order and its records took their channel txns.
	dst = av(dst, o.TxnAt)
	for i := range o.Exceptions {
		dst = av(dst, o.Exceptions[i].RefundAt)
	}
	return dst
}

func decodeOrder(key, v []byte) (*payment.Order, error) {
	if len(key) != accountKeyLen {
		return nil, fmt.Errorf("storage: order key %x: bad length", key)
	}
	if len(v) == 0 || v[0] != orderVersion && v[0] != orderVersionLegacy {
		return nil, fmt.Errorf("storage: order record %x: unknown version", key)
	}
	r := reader{b: v[1:]}
	o := &payment.Order{ID: be.Uint64(key[1:]), Key: r.string(), BizID: r.string(), Form: payment.Form(r.byte()),
		Ledger: r.uint32(), Amount: r.uvarint(), From: r.uvarint(), To: r.uvarint(), Channel: r.string(),
		ChannelAccount: r.string(), Original: r.uvarint(), OriginalTxn: r.string()}
	n := r.uvarint()
	if n > payment.InstrumentsMax {
		r.bad = true
		n = 0
	}
	for range n {
		o.Instruments = append(o.Instruments, payment.Instrument{Kind: payment.Kind(r.byte()), Amount: r.uvarint(),
			Account: r.uvarint(), Refunded: r.uvarint()})
	}
	o.State, o.Stage, o.Outcome = payment.State(r.byte()), payment.Stage(r.byte()), payment.Outcome(r.byte())
	o.Result, o.Ledgered = payment.Result(r.byte()), ledger.TransferResult(r.byte())
	o.Done, o.Refunded, o.Txn, o.Paid, o.SentAt = r.uvarint(), r.uvarint(), r.string(), r.uvarint(), r.uvarint()
	o.Sends, o.Queries, o.Next = r.uint32(), r.uint32(), r.uvarint()
	switch r.byte() {
	case 0:
	case 1:
		o.Flagged = true
	default:
		r.bad = true
	}
	o.Dropped = r.uint32()
	o.Created, o.Updated, o.Version = r.uvarint(), r.uvarint(), r.uint32()
	n = r.uvarint()
	if n > payment.ExceptionsMax {
		r.bad = true
		n = 0
	}
	for range n {
		o.Exceptions = append(o.Exceptions, payment.Exception{Kind: payment.ExceptionKind(r.byte()),
			Step: payment.ExceptionStep(r.byte()), Txn: r.string(), Amount: r.uvarint(), Note: r.string(),
			Attempt: r.uint32(), Refund: r.string(), SentAt: r.uvarint(), Queries: r.uint32(), Next: r.uvarint(), Created: r.uvarint(), Updated: r.uvarint()})
	}
	if v[0] == orderVersion {
		o.TxnAt = r.uvarint()
		for i := range o.Exceptions {
			o.Exceptions[i].RefundAt = r.uvarint()
		}
	}
	return o, r.done("order", key)
}

// OrderWrite is one order as a payment shard writes it: New when the order is new (its
// idempotency and biz id index entries are written with it).
type OrderWrite struct {
	Order *payment.Order
	New   bool
	// Txns: the order recorded a channel txn since it was last written; its txns are
	// indexed by when it recorded them (OrdersWithTxnsRecorded).
	Txns bool
}

// OrderWriter writes a payment shard's orders.
type OrderWriter struct {
	w       *Writer
	changed [][]int
	// logBuf, bodyBuf and orderBuf are the event log record's buffers, never the writer's
	// key and value buffers (set keeps the value it was given as the next value buffer: the
	// log record would be encoded into itself).
	logBuf, bodyBuf, orderBuf []byte
	at                        [][2]int // where each order's record lies in bodyBuf

	// active remembers the orders whose active index key this writer set and has not
	// deleted, so that the key is written when an order becomes active and when it stops
	// being so, not with every change of the order (a payment is written three times or
	// more on its way). Only active orders are held, and a shard holds at most
	// ActiveOrdersMax of those. marks are the commit's changes to it, kept once durable.
	active map[uint64]activeMark
	marks  []idMark
	seen   map[uint64]struct{} // a commit's orders (each once)
	order  orderWriteOrder
}

// activeMark is what an OrderWriter knows of an order's active index key.
type activeMark uint8

const (
	activeUnset activeMark = iota // (in marks) the key was deleted
	// activeSet: the writer set the key, which may have been set before by another process
	// (an order active at a restart): a plain delete removes it.
	activeSet
	// activeSetOnce: the writer set the key of an order it wrote new, the key's only set
	// ever (order ids are never reused): a single delete removes it, and when the two meet
	// in a flush or a compaction both vanish.
	activeSetOnce
)

type idMark struct {
	id   uint64
	mark activeMark
}

// OrderWriter returns the writer of payment shard shard.
func (s *Store) OrderWriter(shard uint32) *OrderWriter {
	w := s.Writer(shard)
	w.log.log = uint16(PaymentLogBase + shard)
	return &OrderWriter{w: w, active: map[uint64]activeMark{}, seen: map[uint64]struct{}{}}
}

// writeActive keeps the active index of ow's order: the key is set when the order becomes
// active and deleted when it stops being so. An order the writer knows nothing of (last
// written by an earlier process, or not since) that is active has the key set again; one
// that is not has it deleted (a delete of a key that is not there changes nothing).
func (w *OrderWriter) writeActive(ow OrderWrite) {
	ww, o := w.w, ow.Order
	mark, known := w.active[o.ID]
	switch active := o.Active(); {
	case active && known:
	case active:
		mark = activeSet
		if ow.New {
			mark = activeSetOnce
		}
		ww.set(activeKey(ww.key, ww.shard, o.ID), nil)
		w.marks = append(w.marks, idMark{id: o.ID, mark: mark})
	case known && mark == activeSetOnce:
		ww.singleDel(activeKey(ww.key, ww.shard, o.ID))
		w.marks = append(w.marks, idMark{id: o.ID, mark: activeUnset})
	case known || !ow.New:
		ww.del(activeKey(ww.key, ww.shard, o.ID))
		w.marks = append(w.marks, idMark{id: o.ID, mark: activeUnset})
	}
}

// Commit writes orders, their event log record (LastRound names it) and the shard's last
// order id as one batch and returns when it is durable. An order's active and
// open-exception index entries follow its state.
//
// Each order is in orders at most once (the active index is written from what the writer
// knows of each order's last commit): an order twice is refused, and nothing is written.
func (w *OrderWriter) Commit(orders []OrderWrite, lastID uint64) error {
	ww := w.w
	if ww.batch == nil {
		return errWriterClosed
	}
	b := ww.batch
	clear(w.seen)
	for _, ow := range orders {
		if _, twice := w.seen[ow.Order.ID]; twice {
			return fmt.Errorf("storage: payment shard %d: order %d twice in one commit", ww.shard, ow.Order.ID)
		}
		w.seen[ow.Order.ID] = struct{}{}
	}
	if err := ww.log.load(ww.db); err != nil {
		return err
	}
	// Which exception records changed is told by the orders' stored records: this shard is
	// their only writer, so the live store holds what its last commit wrote.
	var err error
	if w.changed, err = changedExceptions(ww.db, orders, w.changed); err != nil {
		return err
	}
	var lr LogRound
	if len(orders) > 0 { // the shard commits no empty round; the writer allows one
		n, now := 0, uint64(0)
		for i, ow := range orders {
			n += 1 + len(w.changed[i])
			now = max(now, ow.Order.Updated)
		}
		lr = ww.log.next(n, now)
		w.bodyBuf, w.orderBuf, w.at = appendPaymentBody(w.bodyBuf, orders, w.changed, w.orderBuf, w.at)
		w.logBuf = appendPaymentLog(w.logBuf, lr.Time, n, w.bodyBuf)
	}
	// The batch's records go in key order, one family (prefix) after another, each sorted:
	// Pebble inserts a batch into the memtable's skiplist with one cursor, so a key next to the
	// one before is found from there, where a key elsewhere costs a search from the top
	// (BenchmarkOrderWriterCommit; TestOrderWriterBatchInKeyOrder).
	w.marks = w.marks[:0]
	byID := w.order.byID(orders)
	for _, i := range byID {
		w.writeActive(orders[i]) // A
	}
	for _, i := range w.order.newByBizID(orders) { // B
		o := orders[i].Order
		ww.set(be.AppendUint64(bizKey(ww.key, prefixOrderBiz, o.BizID), o.ID), nil)
	}
	for _, d := range w.order.txnDays(orders) { // D
		ww.set(txnDayKey(ww.key, d.channel, d.at, d.order), nil)
	}
	for _, i := range w.order.newByKey(orders) { // K
		o := orders[i].Order
		ww.set(orderKeyKey(ww.key, o.Form, o.Original, o.Key), be.AppendUint64(ww.val[:0], o.ID))
	}
	for _, i := range byID { // O
		// The order's record is the bytes the log record's body holds: encoded once. (Set
		// copies; the writer's value buffer never becomes the body's, see bodyBuf.)
		if err := b.Set(idKey(ww.key, prefixOrder, orders[i].Order.ID), w.bodyBuf[w.at[i][0]:w.at[i][1]], nil); err != nil {
			panic(err) // only on a closed batch: a bug
		}
	}
	ww.set(orderSeqKey(ww.key, ww.shard), be.AppendUint64(ww.val[:0], lastID)) // S
	for _, i := range byID {                                                   // X
		if o := orders[i].Order; openException(o) {
			ww.set(idKey(ww.key, prefixOpen, o.ID), nil)
		} else if len(o.Exceptions) > 0 {
			ww.del(idKey(ww.key, prefixOpen, o.ID))
		}
	}
	for _, i := range byID { // Y
		if o := orders[i].Order; len(o.Exceptions) > 0 {
			ww.set(idKey(ww.key, prefixExcepted, o.ID), nil)
		}
	}
	if lr.Events > 0 { // e
		if err := b.Set(eventLogKey(ww.key, lr.Log, lr.Round), w.logBuf, nil); err != nil {
			panic(err) // only on a closed batch: a bug
		}
	}
	if ww.inspect != nil {
		ww.inspect(b)
	}
	err = commitSynced(b)
	b.Reset()
	if err != nil {
		return fmt.Errorf("storage: commit payment shard %d: %w", ww.shard, err)
	}
	for _, m := range w.marks {
		if m.mark == activeUnset {
			delete(w.active, m.id)
		} else {
			w.active[m.id] = m.mark
		}
	}
	ww.log.reserve(lr)
	ww.log.done(lr)
	return nil
}

// Close releases the writer's batch.
func (w *OrderWriter) Close() error { return w.w.Close() }

// LastEvents are the events of the last commit of orders (the orders themselves are shared).
func (w *OrderWriter) LastEvents(orders []OrderWrite) *RoundEvents {
	ev := &RoundEvents{Orders: make([]OrderEvent, len(orders))}
	for i, ow := range orders {
		ev.Orders[i] = OrderEvent{Order: ow.Order, Exceptions: slices.Clone(w.changed[i])}
	}
	return ev
}

func openException(o *payment.Order) bool {
	for i := range o.Exceptions {
		if o.Exceptions[i].Step != payment.ExcResolved {
			return true
		}
	}
	return false
}

// Order reads an order.
func (v *Reader) Order(id uint64) (o *payment.Order, found bool, err error) {
	key := idKey(nil, prefixOrder, id)
	found, err = v.get(key, func(val []byte) (err error) { o, err = decodeOrder(key, val); return err })
	return o, found, err
}

// OrderKey names an order by what its idempotency key is unique within: its form, for a
// refund its original, and the key.
type OrderKey struct {
	Form     payment.Form
	Original uint64 // refunds only
	Key      string
}

// OrdersByKeys finds the orders many idempotency keys name at once: ids[i] is the order of
// keys[i], 0 when there is none. One iterator serves them all, seeking each key by its
// prefix so that the bloom filters skip the files without it (a Get per key would set up
// the whole stack of levels for each).
func (v *Reader) OrdersByKeys(keys []OrderKey, ids []uint64) error {
	if len(ids) != len(keys) {
		return fmt.Errorf("storage: %d ids for %d keys", len(ids), len(keys))
	}
	if len(keys) == 0 {
		return nil
	}
	it, err := v.r.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixOrderKey}, UpperBound: []byte{prefixOrderKey + 1}})
	if err != nil {
		return fmt.Errorf("storage: iterate: %w", err)
	}
	var k []byte
	for i, q := range keys {
		ids[i] = 0
		k = orderKeyKey(k, q.Form, q.Original, q.Key)
		if !it.SeekPrefixGE(k) || !bytes.Equal(it.Key(), k) {
			continue
		}
		val, err := it.ValueAndErr()
		if err == nil && (len(val) != 8 || be.Uint64(val) == 0) {
			err = fmt.Errorf("malformed (%x)", val)
		}
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("storage: order key record %x: %w", k, err)
		}
		ids[i] = be.Uint64(val)
	}
	return it.Close()
}

// OrdersByBizID calls fn with the ids of the orders with biz id biz, in ascending order, until
// it returns false.
func (v *Reader) OrdersByBizID(biz string, fn func(id uint64) bool) error {
	return v.idsUnder(bizKey(nil, prefixOrderBiz, biz), fn)
}

// TransfersByBizID calls fn with the ids of the ledger transfers with biz id biz, in
// ascending order, until it returns false.
func (v *Reader) TransfersByBizID(biz string, fn func(id uint64) bool) error {
	return v.idsUnder(bizKey(nil, prefixTransferBiz, biz), fn)
}

// idsUnder calls fn with the big-endian ids that follow prefix in the keys under it.
func (v *Reader) idsUnder(prefix []byte, fn func(id uint64) bool) error {
	lower, upper := prefixBounds(prefix...)
	return v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		if len(k) != len(prefix)+8 {
			return false, fmt.Errorf("storage: index key %x: bad length", k)
		}
		return fn(be.Uint64(k[len(prefix):])), nil
	})
}

// ForEachActiveOrder calls fn with every order of payment shard shard that still waits for
// something (recovery).
func (v *Reader) ForEachActiveOrder(shard uint32, fn func(*payment.Order) error) error {
	prefix := activeKey(nil, shard, 0)[:3]
	var ferr error
	err := v.idsUnder(prefix, func(id uint64) bool {
		ferr = v.orderErr(id, fn)
		return ferr == nil
	})
	if err != nil {
		return err
	}
	return ferr
}

func (v *Reader) orderErr(id uint64, fn func(*payment.Order) error) error {
	o, found, err := v.Order(id)
	if err == nil && !found {
		err = fmt.Errorf("storage: order %d is indexed but missing", id)
	}
	if err == nil {
		err = fn(o)
	}
	return err
}

// OrdersWithExceptions calls fn, in ascending id above after, with the orders that have an
// exception not resolved (or, with resolved, every order that ever had one), until fn returns
// false.
func (v *Reader) OrdersWithExceptions(resolved bool, after uint64, fn func(*payment.Order) bool) error {
	if after == 1<<64-1 {
		return nil
	}
	prefix := byte(prefixOpen)
	if resolved {
		prefix = prefixExcepted
	}
	lower := idKey(nil, prefix, after+1)
	_, upper := prefixBounds(prefix)
	return v.scan(lower, upper, false, func(k, _ []byte) (bool, error) {
		if len(k) != accountKeyLen {
			return false, fmt.Errorf("storage: exception index key %x: bad length", k)
		}
		more := true
		err := v.orderErr(be.Uint64(k[1:]), func(o *payment.Order) error { more = fn(o); return nil })
		return more && err == nil, err
	})
}

// LastOrderID is the last order id payment shard shard gave.
func (v *Reader) LastOrderID(shard uint32) (uint64, error) {
	var id uint64
	key := orderSeqKey(nil, shard)
	_, err := v.get(key, func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("storage: order sequence %x: malformed", key)
		}
		id = be.Uint64(val)
		return nil
	})
	return id, err
}

// channelsKey holds the payment channels the store has seen, in the order first seen.
var channelsKey = []byte{prefixMeta, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 's'}

// Channels are the payment channels the store has seen, in the order it first saw them.
func (v *Reader) Channels() ([]string, error) {
	var out []string
	_, err := v.get(channelsKey, func(val []byte) error {
		if len(val) > 0 {
			out = strings.Split(string(val), "\n")
		}
		return nil
	})
	return out, err
}

// SetChannels stores the payment channels seen (synced).
func (s *Store) SetChannels(names []string) error {
	for _, n := range names {
		if n == "" || strings.Contains(n, "\n") {
			return fmt.Errorf("storage: channel name %q", n)
		}
	}
	return pebbleWrite(func() error { return s.db.Set(channelsKey, []byte(strings.Join(names, "\n")), pebble.Sync) })
}
