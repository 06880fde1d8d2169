package index

import (
	"io"

	"postoffice/internal/store"
)

// Source is what an Index reads and changes a store through: a store whose
// messages are files another program may move, add or remove behind its
// back (the Maildir). The Index keeps the summaries; the Source keeps the
// messages, the locks, the durability and the events.
//
// A message is named two ways. Its key is stable while the message exists,
// whatever its flags (the Maildir: the file name without its ":2," info);
// its location says where it is now and changes with its flags (the
// Maildir: "new/<name>" or "cur/<name>"). Both are opaque to the Index.
type Source interface {
	store.Events

	// Dir returns the directory of the folder box (index.BoxName): the
	// folder exists when it does.
	Dir(box string) (string, error)

	// IndexFile returns where the index file of box lives (its directory
	// is made on first use).
	IndexFile(box string) (string, error)

	// Mailboxes returns the names of the mailboxes that exist, sorted.
	Mailboxes() ([]string, error)

	// Stamp returns a value that changes whenever a message of mailbox is
	// added, removed or renamed, by anyone, and whether the value is
	// settled: false when the mailbox changed so recently that one more
	// change might not change the value (a timestamp's tick). A mailbox
	// that does not exist has a stamp too.
	Stamp(mailbox string) (stamp string, settled bool, err error)

	// Scan lists the messages of mailbox cheaply (no message is read): their
	// key, location and seen flag. A mailbox that does not exist is empty.
	Scan(mailbox string) ([]Scanned, error)

	// Describe returns the id, size and arrival time of a scanned message;
	// ok is false when it vanished meanwhile. buf is a scratch buffer the
	// Source may allocate on first need and reuse.
	Describe(mailbox, loc string, buf *[]byte) (m Described, ok bool, err error)

	// Open returns the message at loc as POP3 RETR sends it (CRLF line
	// ends, ending in CRLF), exactly size octets; store.ErrNotFound when it
	// is not there. A negative size asks for the same text without the
	// size check, as long as it is now: what summaries and searches read
	// (a file rewritten since Describe is then still read, not refused).
	Open(mailbox, loc string, size int64) (io.ReadCloser, error)

	// Exists reports whether a message is at loc.
	Exists(mailbox, loc string) (bool, error)

	// Remove takes the maildrop lock of mailbox without waiting
	// (store.ErrLocked, nothing removed, while a POP3 session holds it),
	// removes the messages, skipping those already gone, makes the
	// removals durable, publishes one store.EventDeleted, releases the lock
	// and returns the ids of the messages it removed.
	Remove(mailbox string, msgs []Located) (removed []string, err error)

	// SetSeen sets or clears the seen flag of the message at loc, durably,
	// publishes a store.EventUpdated when something changed, and returns
	// the message's new location (loc when nothing changed).
	// store.ErrNotFound when it is not there.
	SetSeen(mailbox, id, loc string, seen bool) (newLoc string, err error)
}

// Scanned is one message of a Source.Scan.
type Scanned struct {
	Key, Loc string
	Seen     bool
}

// Described is what Source.Describe tells of a message.
type Described struct {
	ID   string
	Size int64
	// Order is the arrival time in Unix nanoseconds: the sort key.
	Order int64
	// MTime is the file's modification time in Unix nanoseconds (IMAP's
	// INTERNALDATE).
	MTime int64
}

// Located is a message of a Source.Remove.
type Located struct {
	ID, Loc string
}
