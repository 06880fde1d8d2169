package store

import "sync"

// EventKind says what happened to the messages of an Event.
type EventKind string

// Kinds of events published by a store.
const (
	// EventArrived: messages were delivered (Deliver returned nil).
	EventArrived EventKind = "arrived"
	// EventDeleted: messages were removed (POP3 Commit, Browser.Delete, or
	// any other removal through the store, such as retention).
	EventDeleted EventKind = "deleted"
	// EventUpdated: the flags of messages changed (Browser.SetSeen).
	EventUpdated EventKind = "updated"
)

// Event reports a change to messages of one mailbox made through this
// store value. Changes made by other processes or tools (a mail reader
// moving files) are not reported; readers that care detect them otherwise
// (the index compares directory modification times).
type Event struct {
	Kind    EventKind
	Mailbox string
	// Folder is the folder of Mailbox the messages are in: "" for INBOX
	// (what SMTP delivers to, POP3 serves and the web inbox shows),
	// else a folder name as Folders speaks them. Subscribers that care
	// for INBOX only ignore events with a Folder.
	Folder string
	IDs    []string
	// Size is, for EventArrived, the size in octets of the message (one
	// message per arrival event).
	Size int64
}

// Events is the change feed of a store.
type Events interface {
	// Subscribe registers fn to be called with every event published from
	// now on, until the returned cancel function is called. fn is called
	// synchronously on the goroutine that made the change (a delivery, a
	// POP3 QUIT), after the change is durable: it must be quick and must
	// not block (hand the event to a buffered channel and drop or coalesce
	// when full). fn must not modify the event. Calls for different events
	// may be concurrent.
	Subscribe(fn func(Event)) (cancel func())
}

// Hub fans events out to subscribers: an implementation embeds one to
// provide Events. The zero value is ready.
type Hub struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(Event)
}

// Subscribe implements Events.
func (h *Hub) Subscribe(fn func(Event)) (cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = make(map[int]func(Event))
	}
	id := h.next
	h.next++
	h.subs[id] = fn
	return func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

// Publish reports ev to every subscriber. An event without ids is not
// published.
func (h *Hub) Publish(ev Event) {
	if len(ev.IDs) == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, fn := range h.subs {
		fn(ev)
	}
}
