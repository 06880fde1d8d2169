// Package store is what every message store of Postoffice shares: the
// interfaces the protocol backends, the web inbox, retention, metrics and the
// command line use (delivery, maildrops, events, browsing and search,
// administration, lifecycle), the errors callers branch on, the types those
// interfaces speak in (Event, Summary, Query), message ids and name
// validation. It holds no implementation: the Maildir is in
// internal/store/maildir, its browsing index in internal/store/index, and a
// second store is a sibling of those. Nothing outside an implementation
// builds a file path.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// Sentinel errors callers branch on.
var (
	// ErrLocked: the maildrop is held by another session or process.
	ErrLocked = errors.New("store: maildrop locked")
	// ErrNoSpace: the filesystem is full (ENOSPC or EDQUOT).
	ErrNoSpace = errors.New("store: no space left")
	// ErrBadMailbox: a mailbox name that is not a safe single path element.
	ErrBadMailbox = errors.New("store: invalid mailbox name")
	// ErrNotFound: no such message (or mailbox, where that matters).
	ErrNotFound = errors.New("store: not found")
	// ErrUnavailable: a service the store depends on (the shared
	// store's PostgreSQL or S3 server) did not answer or failed; the
	// operation did not take effect and may be tried again. Protocols
	// answer it as a temporary failure (451 4.3.0, -ERR [SYS/TEMP],
	// NO [UNAVAILABLE]).
	ErrUnavailable = errors.New("store: storage service unavailable")
)

// Store is the storage of every mailbox, as a whole: what one
// implementation (the Maildir, later a shared store) gives the rest of the
// server. Each part is its own interface so that a caller can ask for no
// more than it uses.
type Store interface {
	Deliverer
	MaildropOpener
	Events
	Admin
	Lifecycle
	Folders
}

// Deliverer stores new messages: the SMTP backend's view of the store.
type Deliverer interface {
	// Deliver reads a message from r to EOF and stores one copy in each
	// distinct mailbox of mailboxes. id must come from NewID.
	//
	// Contract: when Deliver returns nil, the message's data and its
	// directory entry in every mailbox are durable (fsynced); the message is
	// then visible to OpenMaildrop. When it returns an error, nothing of the
	// message is visible in any mailbox (no partial file in new/ or cur/). A
	// read error from r (client gone, size limit) aborts the delivery and is
	// returned wrapped. Disk full returns an error wrapping ErrNoSpace.
	// Deliver never holds the whole message in memory. An EventArrived per
	// mailbox is published after the message is durable.
	Deliver(ctx context.Context, id string, mailboxes []string, r io.Reader) error

	// NewID returns a fresh message id: unique, never reused, sortable by
	// time of assignment, 1-70 characters of 0x21-0x7E without '/' or ':'.
	// It is the file name stem and the POP3 UIDL.
	NewID() string
}

// MaildropOpener opens maildrops: the POP3 backend's view of the store.
type MaildropOpener interface {
	// OpenMaildrop takes the exclusive lock of a mailbox (RFC 1939 §8) and
	// snapshots its listing. It returns ErrLocked when another session of
	// this or any other process holds the lock. The mailbox need not exist
	// yet (an empty maildrop).
	OpenMaildrop(mailbox string) (Maildrop, error)
}

// MessageInfo describes one message of a maildrop snapshot.
type MessageInfo struct {
	// ID is the unique id (the POP3 UIDL): 1-70 characters of 0x21-0x7E.
	ID string
	// Size is the exact number of octets Open yields: the message with
	// CRLF line ends, ending in CRLF.
	Size int64
}

// Maildrop is an exclusively locked mailbox snapshot. Its listing does not
// change during its life; mail delivered meanwhile shows at the next open.
type Maildrop interface {
	// Messages returns the snapshot, oldest first. The caller must not
	// modify it.
	Messages() []MessageInfo
	// Open returns the content of message i (index into Messages) with
	// every line ending in CRLF, ending in CRLF, exactly Size octets.
	Open(i int) (io.ReadCloser, error)
	// Commit removes the messages with the given indexes and makes the
	// removal durable (fsync of the directories) before it returns. A
	// message already gone is not an error. On error some messages may be
	// removed and others not, but none is half-removed. An EventDeleted is
	// published for what was removed.
	Commit(indexes []int) error
	// MarkSeen gives message i the \Seen flag (the POP3 engine calls it
	// after a complete RETR, as Dovecot's POP3 server marks retrieved
	// mail seen), durably when it returns. Its ID, Size and index do not
	// change. A message already seen costs nothing; one gone is
	// ErrNotFound. An EventUpdated is published when the flag changed.
	MarkSeen(i int) error
	// Close releases the lock. It removes nothing.
	Close() error
}

// Admin is what the operator's tools (retention, the mailbox gauges,
// "postoffice mailbox") need to know about and do to mailboxes beyond what
// the protocols use. None of it takes a lock but Prune.
type Admin interface {
	// Mailboxes returns the names of the mailboxes that exist, sorted.
	Mailboxes() ([]string, error)
	// HasMailbox reports whether mailbox exists.
	HasMailbox(mailbox string) (bool, error)
	// CreateMailbox makes mailbox exist, empty unless it already held
	// mail, durably when it returns (the server creates the default
	// mailbox at start-up).
	CreateMailbox(mailbox string) error
	// Usage counts the messages of mailbox and adds up their sizes
	// cheaply (no message is read; a foreign file with LF line ends may
	// count its size on disk). A mailbox that does not exist is empty.
	Usage(mailbox string) (Usage, error)
	// List returns the messages of mailbox, oldest first, as a POP3 login
	// would see them (same ids, sizes and order), without taking the
	// lock. A mailbox that does not exist is empty.
	List(mailbox string) ([]Listed, error)
	// Prune removes the messages of mailbox that policy says are too old
	// or too many, oldest first, at most limit of them (limit <= 0: no
	// cap). It never removes anything from a mailbox a POP3 session holds:
	// then it returns an error wrapping ErrLocked and removes nothing. The
	// removal is durable when Prune returns and is published as an
	// EventDeleted. Age is the delivery time of a message; now is the
	// reference time.
	Prune(mailbox string, policy RetentionPolicy, limit int, now time.Time) (PruneResult, error)
}

// Lifecycle is what the server does with a store at start, while it runs,
// and at shutdown.
type Lifecycle interface {
	// Recover removes what deliveries cut off by a crash left behind
	// (never visible as messages, but taking space) and returns how many
	// leftovers it removed. It is meant for start-up and may run while
	// the store serves.
	Recover() (removed int, err error)
	// Probe reports whether the store can take a delivery now (for
	// /readyz): nil, or what is wrong.
	Probe() error
	// FreeSpace reports whether the store has room for new mail (its
	// free-space floor, --min-free-space): nil, or an error wrapping
	// ErrNoSpace that says why. Cheap enough to call at every MAIL.
	FreeSpace() error
	// Close releases what the store holds for deliveries. Deliveries may
	// still run during and after Close.
	Close() error
}

// Usage is the message count and size of a mailbox.
type Usage struct {
	Messages int
	Bytes    int64
}

// Listed is one message of an Admin.List: its id and size as POP3 shows
// them, and when it was received.
type Listed struct {
	MessageInfo
	Received time.Time
	// Open reads the message as POP3 would send it (CRLF line ends,
	// exactly Size octets), without the lock. The message may have been
	// removed since the listing: then it fails with ErrNotFound.
	Open func() (io.ReadCloser, error)
}

// RetentionPolicy says which messages of a mailbox Prune removes. A zero
// field is no limit; the zero policy removes nothing.
type RetentionPolicy struct {
	// MaxAge removes messages received longer ago than this.
	MaxAge time.Duration
	// MaxMessages keeps at most this many messages, removing the oldest.
	MaxMessages int
}

// Enabled reports whether p removes anything at all.
func (p RetentionPolicy) Enabled() bool { return p.MaxAge > 0 || p.MaxMessages > 0 }

// Cut says how many of n messages, oldest first, p removes: the oldest
// beyond MaxMessages, then those received before now minus MaxAge
// (received(i) is the arrival of message i), at most limit of them
// (limit <= 0: no cap); more reports that the policy wanted more.
func (p RetentionPolicy) Cut(n int, received func(i int) time.Time, limit int, now time.Time) (cut int, more bool) {
	if p.MaxMessages > 0 && n > p.MaxMessages {
		cut = n - p.MaxMessages
	}
	if p.MaxAge > 0 {
		old := now.Add(-p.MaxAge)
		for cut < n && received(cut).Before(old) {
			cut++
		}
	}
	if limit > 0 && cut > limit {
		return limit, true
	}
	return cut, false
}

// PruneResult is what one Prune call did.
type PruneResult struct {
	Removed int   // messages removed
	Bytes   int64 // their size
	Left    int   // messages left in the mailbox
	More    bool  // the policy wants more removed than limit allowed
}
