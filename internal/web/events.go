package web

import (
	"fmt"
	"net/http"
	"time"

	"postoffice/internal/store"
)

// Event stream parameters.
const (
	eventBuffer    = 64
	heartbeatEvery = 20 * time.Second
)

// eventJSON is the data of one server-sent event.
type eventJSON struct {
	Mailbox string   `json:"mailbox"`
	IDs     []string `json:"ids"`
}

// events streams arrivals, deletions and flag changes of the mailboxes
// the principal may see as Server-Sent Events (HTML Living Standard
// §9.2): "event: arrived|deleted|updated" with data
// {"mailbox": ..., "ids": [...]}. If the client falls behind, events are
// dropped and one "event: resync" tells it to reload. A comment line is
// sent every 20 seconds to keep proxies from closing the stream.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	only := r.URL.Query().Get("mailbox")
	if only != "" && (!store.ValidMailboxName(only) || !p.mayRead(only)) {
		writeError(w, http.StatusNotFound, "no such mailbox")
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives the listener's read timeout by design.
	rc.SetReadDeadline(time.Time{})
	ch := make(chan store.Event, eventBuffer)
	lost := make(chan struct{}, 1)
	cancel := h.opts.Store.Subscribe(func(ev store.Event) {
		// The web inbox shows INBOX: events of other folders are not its.
		if ev.Folder != "" || !p.mayRead(ev.Mailbox) || only != "" && ev.Mailbox != only {
			return
		}
		select {
		case ch <- ev:
		default:
			select {
			case lost <- struct{}{}:
			default:
			}
		}
	})
	defer cancel()

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// The client reconnects after 2 s if the stream breaks.
	fmt.Fprint(w, "retry: 2000\nevent: hello\ndata: {}\n\n")
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		// Each write gets its own deadline: the listener's write timeout
		// must not cut a stream that is merely long-lived.
		rc.SetWriteDeadline(time.Now().Add(heartbeatEvery + 10*time.Second))
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-tick.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case <-lost:
			_, err = fmt.Fprint(w, "event: resync\ndata: {}\n\n")
		case ev := <-ch:
			// The stream was authorized at its start: send nothing more
			// once its session logged out or its user was deleted.
			if _, ok := h.who(r); !ok {
				return
			}
			data, _ := marshalJSON(eventJSON{Mailbox: ev.Mailbox, IDs: ev.IDs})
			_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Kind, data)
		}
		if err == nil {
			err = rc.Flush()
		}
		if _, ok := h.who(r); !ok || err != nil {
			return
		}
	}
}
