package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"postoffice/internal/store"
)

// Wait defaults.
const (
	// DefaultWaitMax is the default cap of a wait's timeout (--wait-max).
	DefaultWaitMax = 5 * time.Minute
	// defaultWaitTimeout is a wait's timeout when the request gives none.
	defaultWaitTimeout = 30 * time.Second
)

// waitMessage is GET .../messages/wait?q=&after=&timeout=: the first
// message matching q that arrived after the marker (any message without
// one), answered with the document of GET .../messages/{id} as soon as it
// is durable, or 408 after the timeout.
//
// No message is missed: the handler subscribes to the store's arrivals
// before it looks at the messages already there, so one that lands
// between the look and the subscription still wakes it, and every look
// sees each message whose delivery returned before it (store.Arrivals).
func (h *Handler) waitMessage(w http.ResponseWriter, r *http.Request, mb string) {
	arr, ok := h.mail.(store.Arrivals)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this store cannot wait for messages")
		return
	}
	q, err := store.ParseQuery(r.URL.Query().Get("q"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "q: "+err.Error())
		return
	}
	after, err := waitMarker(r.URL.Query().Get("after"), &q)
	if err != nil {
		writeError(w, http.StatusBadRequest, "after: "+err.Error())
		return
	}
	timeout, err := h.waitTimeout(r.URL.Query().Get("timeout"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "timeout: "+err.Error())
		return
	}

	if h.waitHook != nil {
		defer h.waitHook("done")
	}
	// Subscribe first, then look: see the comment above.
	wake := make(chan struct{}, 1)
	cancel := h.mail.Subscribe(func(ev store.Event) {
		if ev.Kind == store.EventArrived && ev.Folder == "" && ev.Mailbox == mb {
			select {
			case wake <- struct{}{}:
			default: // one wake-up pending covers every arrival so far
			}
		}
	})
	defer cancel()

	rc := http.NewResponseController(w)
	// A wait outlives the listener's read timeout by design; an expired
	// read deadline would cancel the request's context.
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Now().Add(timeout + 30*time.Second))
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	gone := ""
	for {
		s, found, err := arr.Arrival(mb, q, after, false)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "after: no such message in this mailbox")
			return
		}
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		if found {
			view, err := h.messageView(mb, s.ID)
			if err == nil {
				w.Header().Set("Cache-Control", "no-store")
				writeJSON(w, http.StatusOK, view)
				return
			}
			if !errors.Is(err, store.ErrNotFound) || s.ID == gone {
				h.storeError(w, r, err)
				return
			}
			// Deleted since it was found: look again.
			gone = s.ID
			continue
		}
		if h.waitHook != nil {
			h.waitHook("idle")
		}
		select {
		case <-wake:
			// The wait was authorized at its start: answer nothing once
			// its session logged out or its user was deleted.
			if _, ok := h.who(r); !ok {
				writeError(w, http.StatusUnauthorized, "login required")
				return
			}
		case <-timer.C:
			// RFC 9110 §15.5.9: a server sending 408 SHOULD send the
			// "close" connection option.
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "no matching message arrived within "+timeout.String())
			return
		case <-r.Context().Done():
			return // the client went away
		case <-h.done:
			writeError(w, http.StatusServiceUnavailable, "the server is shutting down")
			return
		}
	}
}

// latestMessage is GET .../messages/latest?q=: the newest message
// (matching q), or 404.
func (h *Handler) latestMessage(w http.ResponseWriter, r *http.Request, mb string) {
	arr, ok := h.mail.(store.Arrivals)
	if !ok {
		writeError(w, http.StatusNotImplemented, "this store cannot find the latest message")
		return
	}
	q, err := store.ParseQuery(r.URL.Query().Get("q"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "q: "+err.Error())
		return
	}
	gone := ""
	for {
		s, found, err := arr.Arrival(mb, q, "", true)
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		if !found {
			writeError(w, http.StatusNotFound, "no matching message")
			return
		}
		view, err := h.messageView(mb, s.ID)
		if errors.Is(err, store.ErrNotFound) && s.ID != gone {
			gone = s.ID
			continue // deleted meanwhile
		}
		if err != nil {
			h.storeError(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusOK, view)
		return
	}
}

// waitMarker parses the after parameter: an RFC 3339 time, which becomes
// a lower bound of q's arrival time (at or after), or a message id,
// returned. Empty is no marker.
func waitMarker(v string, q *store.Query) (string, error) {
	if v == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		if t.After(q.After) {
			q.After = t
		}
		return "", nil
	}
	if !store.ValidID(v) {
		return "", errors.New("want a message id or an RFC 3339 time")
	}
	return v, nil
}

// waitTimeout parses the timeout parameter: a Go duration ("30s",
// "1m30s") or a number of seconds; capped by Options.WaitMax.
func (h *Handler) waitTimeout(v string) (time.Duration, error) {
	max := h.opts.WaitMax
	if max <= 0 {
		max = DefaultWaitMax
	}
	if v == "" {
		return min(defaultWaitTimeout, max), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if nerr != nil || n != n || n > 1e9 {
			return 0, errors.New("want a duration such as 30s or a number of seconds")
		}
		d = time.Duration(n * float64(time.Second))
	}
	if d < 0 {
		return 0, errors.New("must not be negative")
	}
	return min(d, max), nil
}
