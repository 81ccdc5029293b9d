package payments

import (
	"errors"
	"io"
	"net/http"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
)

// NotifyPath is where channels post their callbacks: NotifyPath + the channel's name.
const NotifyPath = "/notify/"

// NotifyHandler serves channel callbacks (POST NotifyPath{channel}). A callback is verified
// (size, HMAC signature with the channel's secret, fields) before anything is read from it;
// then its order number, channel and biz id must name an order of that channel. A refused
// callback is answered 4xx, counted, and writes nothing. A callback that changed an order
// is answered 200 once the change is durable; a duplicate is answered 200 at once. When the
// payment actors cannot take it (stopping, overloaded) the answer is 503 and the channel
// sends it again later.
func (e *Engine) NotifyHandler(secrets map[string][]byte) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+NotifyPath+"{channel}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("channel")
		secret, ok := secrets[name]
		if !ok || e.gateways[name] == nil {
			e.refuse(w, "unknown", "unknown_channel", http.StatusNotFound)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channel.MaxNoticeBytes+1))
		if err != nil {
			e.refuse(w, name, "too_large", http.StatusRequestEntityTooLarge)
			return
		}
		n, err := channel.ParseNotice(secret, body, r.Header.Get(channel.SignatureHeader))
		if err != nil {
			e.log.Warn("payments: callback refused", "channel", name, "err", err, "remote", r.RemoteAddr)
			e.refuse(w, name, "bad_notice", http.StatusBadRequest)
			return
		}
		res, err := e.Notice(name, n)
		switch {
		case errors.Is(err, ErrStopped), errors.Is(err, ErrOverloaded):
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		case err != nil:
			e.log.Error("payments: callback not applied", "channel", name, "order_no", n.OrderNo, "err", err)
			http.Error(w, "not applied", http.StatusServiceUnavailable)
			return
		case res == payment.ResultOverloaded:
			// Money the order cannot record now (it holds as many exception records as it
			// may): not applied; the channel calls back again while an operator looks.
			e.log.Error("payments: callback not applied: its order has no room for another exception record",
				"channel", name, "order_no", n.OrderNo, "biz_id", n.BizID, "txn", n.Txn, "amount", n.Amount)
			e.metrics.notices.WithLabelValues(name, "no_room").Inc()
			http.Error(w, "the order has no room for the record; send again later", http.StatusServiceUnavailable)
			return
		case res != payment.ResultOK:
			e.log.Warn("payments: callback refused", "channel", name, "order_no", n.OrderNo, "biz_id", n.BizID,
				"result", res.String())
			e.refuse(w, name, res.String(), http.StatusBadRequest)
			return
		}
		e.metrics.notices.WithLabelValues(name, "applied").Inc()
		_, _ = io.WriteString(w, "OK")
	})
	return mux
}

func (e *Engine) refuse(w http.ResponseWriter, name, reason string, code int) {
	e.metrics.notices.WithLabelValues(name, reason).Inc()
	http.Error(w, reason, code)
}
