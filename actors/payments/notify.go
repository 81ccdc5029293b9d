package payments

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/ledgercore/ledger/channel"
	"github.com/ledgercore/ledger/ledger/payment"
)

// NotifyPath is where channels post their callbacks: NotifyPath + the channel's name.
const NotifyPath = "/notify/"

// NotifyConcurrencyMax bounds the callback posts read and applied at once (each body up to
// channel.MaxNoticesBytes); one past it is answered 503 at once, and the channel posts again.
const NotifyConcurrencyMax = 64

// NotifyHandler serves channel callbacks (POST NotifyPath{channel}): one notice (a JSON
// object) or many (a JSON array), under one signature. A body is verified (size, HMAC
// signature with the channel's secret, every field of every notice) before anything is read
// from it, and refused whole (400, counted, nothing written) when any of it fails. Then
// each notice's order number, channel and biz id must name an order of that channel; a
// notice that does not is refused and counted, and writes nothing. A notice that changed an
// order is answered once the change is durable; a duplicate at once. When the payment
// actors cannot take a notice (stopping, overloaded) or its order has no room for another
// exception record, the answer is 503 and the channel sends the body again later (what was
// applied is then a duplicate). A notice alone (an object) refused is answered 400; an array
// is answered 200 with each notice's result, `{"results":["ok","order_not_found",...]}`.
// At most NotifyConcurrencyMax posts are served at once; more are answered 503.
func (e *Engine) NotifyHandler(secrets map[string][]byte) http.Handler {
	mux := http.NewServeMux()
	slots := make(chan struct{}, NotifyConcurrencyMax)
	mux.HandleFunc("POST "+NotifyPath+"{channel}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("channel")
		secret, ok := secrets[name]
		if !ok || e.gateways[name] == nil {
			e.refuse(w, "unknown", "unknown_channel", http.StatusNotFound)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			e.refuse(w, name, "busy", http.StatusServiceUnavailable)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, channel.MaxNoticesBytes+1))
		if err != nil {
			e.refuse(w, name, "too_large", http.StatusRequestEntityTooLarge)
			return
		}
		ns, err := channel.ParseNotices(secret, body, r.Header.Get(channel.SignatureHeader))
		if err != nil {
			e.log.Warn("payments: callback refused", "channel", name, "err", err, "remote", r.RemoteAddr)
			e.refuse(w, name, "bad_notice", http.StatusBadRequest)
			return
		}
		results, errs := e.Notices(name, ns)
		retry := ""
		answers := make([]string, len(ns))
		for i, n := range ns {
			res, err := results[i], errs[i]
			switch {
			case errors.Is(err, ErrStopped), errors.Is(err, ErrOverloaded):
				retry, answers[i] = err.Error(), "retry"
			case err != nil:
				e.log.Error("payments: callback not applied", "channel", name, "order_no", n.OrderNo, "err", err)
				retry, answers[i] = "not applied", "retry"
			case res == payment.ResultOverloaded:
				// Money the order cannot record now (it holds as many exception records as it
				// may): not applied; the channel calls back again while an operator looks.
				e.log.Error("payments: callback not applied: its order has no room for another exception record",
					"channel", name, "order_no", n.OrderNo, "biz_id", n.BizID, "txn", n.Txn, "amount", n.Amount)
				e.metrics.notices.WithLabelValues(name, "no_room").Inc()
				retry, answers[i] = "the order has no room for the record; send again later", "retry"
			case res != payment.ResultOK:
				e.log.Warn("payments: callback refused", "channel", name, "order_no", n.OrderNo, "biz_id", n.BizID,
					"result", res.String())
				e.metrics.notices.WithLabelValues(name, res.String()).Inc()
				answers[i] = res.String()
			default:
				e.metrics.notices.WithLabelValues(name, "applied").Inc()
				answers[i] = "ok"
			}
		}
		many := channel.IsNoticeArray(body)
		switch {
		case retry != "":
			http.Error(w, retry, http.StatusServiceUnavailable)
		case !many && answers[0] != "ok":
			http.Error(w, answers[0], http.StatusBadRequest)
		case !many:
			_, _ = io.WriteString(w, "OK")
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(struct {
				Results []string `json:"results"`
			}{answers})
		}
	})
	return mux
}

func (e *Engine) refuse(w http.ResponseWriter, name, reason string, code int) {
	e.metrics.notices.WithLabelValues(name, reason).Inc()
	http.Error(w, reason, code)
}
