package index

import (
	"errors"
	"fmt"
	"io"

	"postoffice/internal/store"
)

// This file holds what a mail browser (the web inbox) does to single
// messages: read one, delete some, mark read or unread. Messages are found
// by id (the POP3 UIDL), never by a location built from the request, so an
// id cannot reach outside its mailbox.

// locate returns the entry of message id, checking that its message is
// still where the index saw it; b.mu is held. When it has been moved (a
// mail reader renamed it), the index is reconciled once and the lookup
// retried.
func (x *Index) locate(b *boxIndex, id string) (*entry, error) {
	for try := 0; ; try++ {
		en, ok := b.byID[id]
		if ok {
			if there, err := x.src.Exists(b.name, en.loc); err != nil {
				return nil, err
			} else if there {
				return en, nil
			}
		}
		if try > 0 {
			return nil, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
		}
		if err := x.reconcile(b, false); err != nil {
			return nil, err
		}
		if !ok {
			// The index was current; the id is unknown.
			if _, ok := b.byID[id]; !ok {
				return nil, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
			}
		}
	}
}

// Open implements store.Browser.
func (x *Index) Open(mailbox, id string) (io.ReadCloser, store.Summary, error) {
	if !store.ValidID(id) {
		return nil, store.Summary{}, fmt.Errorf("message %q: %w", id, store.ErrNotFound)
	}
	b, err := x.box(mailbox)
	if err != nil {
		return nil, store.Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, err := x.locate(b, id)
	if err != nil {
		return nil, store.Summary{}, err
	}
	rc, err := x.src.Open(mailbox, en.loc, en.Size)
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Summary{}, fmt.Errorf("message %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, store.Summary{}, err
	}
	return rc, en.Summary, nil
}

// Delete implements store.Browser: the Source removes the messages under
// the maildrop lock (Source.Remove), for the duration of the call only.
func (x *Index) Delete(mailbox string, ids []string) (deleted []string, err error) {
	b, err := x.box(mailbox)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var (
		msgs []Located
		ens  []*entry
		errs []error
		seen = map[string]bool{}
	)
	for _, id := range ids {
		if !store.ValidID(id) || seen[id] {
			continue
		}
		seen[id] = true
		en, err := x.locate(b, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		msgs = append(msgs, Located{ID: en.ID, Loc: en.loc})
		ens = append(ens, en)
	}
	removed, err := x.src.Remove(mailbox, msgs)
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	errs = append(errs, err)
	gone := make(map[string]bool, len(removed))
	for _, id := range removed {
		gone[id] = true
	}
	for _, en := range ens {
		if gone[en.ID] {
			b.forget(en)
		} else {
			b.dirty.Store(true) // gone already, or failed: look again
		}
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("delete in %s: %w", mailbox, err)
	}
	return removed, nil
}

// forget drops en from b; b.mu is held.
func (b *boxIndex) forget(en *entry) {
	delete(b.byKey, en.key)
	delete(b.byID, en.ID)
	for i, e := range b.sorted {
		if e == en {
			b.sorted = append(b.sorted[:i], b.sorted[i+1:]...)
			break
		}
	}
	b.size -= en.Size
	if !en.Seen {
		b.unseen--
	}
}

// SetSeen implements store.Browser through Source.SetSeen. No lock is
// taken: POP3 sessions find a moved message by its key.
func (x *Index) SetSeen(mailbox, id string, seen bool) (store.Summary, error) {
	if !store.ValidID(id) {
		return store.Summary{}, fmt.Errorf("message %q: %w", id, store.ErrNotFound)
	}
	b, err := x.box(mailbox)
	if err != nil {
		return store.Summary{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	en, err := x.locate(b, id)
	if err != nil {
		return store.Summary{}, err
	}
	loc, err := x.src.SetSeen(mailbox, id, en.loc, seen)
	if err != nil {
		return store.Summary{}, err
	}
	if en.Seen != seen {
		if seen {
			b.unseen--
		} else {
			b.unseen++
		}
	}
	en.loc, en.Seen = loc, seen
	return en.Summary, nil
}
