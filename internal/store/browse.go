package store

import (
	"io"
	"time"
)

// Browser is what a mail browser (the web inbox, later IMAP) needs of a
// store: mailboxes with their counts, listings and searches from a summary
// of every message, and reading, deleting and flagging single messages. The
// Maildir's is internal/store/index; a store with a database of its own
// answers from it. Messages are named by id (the POP3 UIDL), never by a
// path, so an id cannot reach outside its mailbox.
type Browser interface {
	Events
	// Mailboxes returns every mailbox with its counts, sorted by name.
	Mailboxes() ([]MailboxInfo, error)
	// Mailbox returns the counts of one mailbox; a mailbox that does not
	// exist yet is empty.
	Mailbox(mailbox string) (MailboxInfo, error)
	// Get returns the summary of message id of mailbox, or ErrNotFound.
	Get(mailbox, id string) (Summary, error)
	// List returns the messages of mailbox matching q (all for a zero
	// Query), newest first, skipping offset matches and returning at most
	// limit.
	List(mailbox string, q Query, offset, limit int) (ListResult, error)
	// Open returns the content of message id of mailbox as POP3 RETR sends
	// it (CRLF line ends, exactly Summary.Size octets) and its summary.
	Open(mailbox, id string) (io.ReadCloser, Summary, error)
	// Delete removes the messages ids of mailbox and returns the ids it
	// removed (ids not found are skipped). It fails with ErrLocked,
	// removing nothing, while a POP3 session holds the mailbox: a message
	// must not vanish from under a session's snapshot (RFC 1939 §8
	// exclusive access). The removals are durable when it returns; an
	// EventDeleted is published.
	Delete(mailbox string, ids []string) (deleted []string, err error)
	// SetSeen sets or clears the seen flag of message id and returns its
	// new summary. The id, the content and the size never change. The
	// change is durable when SetSeen returns, and an EventUpdated is
	// published when something changed.
	SetSeen(mailbox, id string, seen bool) (Summary, error)
}

// Arrivals is what a Browser offers to wait for mail: a message found by
// its place in arrival order (the web API's messages/wait and
// messages/latest). Arrival order is Summary.Received, ties broken by the
// order the store recorded the messages in.
type Arrivals interface {
	// Arrival returns the message of mailbox's INBOX matching q that
	// arrived first after the message after ("" for no marker: the first
	// of all), or with newest the last one; ok is false when there is
	// none. It sees every message whose delivery has returned (whose
	// EventArrived was published) before the call. A marker the mailbox
	// does not hold is ErrNotFound, unless it has the form of NewID: its
	// time then marks the arrival (a message deleted since still marks
	// its place).
	Arrival(mailbox string, q Query, after string, newest bool) (s Summary, ok bool, err error)
}

// MailboxInfo is the size of one mailbox.
type MailboxInfo struct {
	Name     string
	Messages int
	Unseen   int
	Size     int64
}

// ListResult is one page of a listing.
type ListResult struct {
	// Total is the number of messages matching the query.
	Total int
	// Messages are the matches from the requested offset, newest first.
	Messages []Summary
}

// Summary is what a mailbox listing shows of one message: the envelope of
// the list view, taken from the message header once and kept by the index.
type Summary struct {
	// ID is the message id, the POP3 UIDL.
	ID string
	// From, To and Subject are the header fields decoded to UTF-8 (RFC 2047
	// encoded words decoded; To includes Cc). Missing fields are empty.
	From    string
	To      []string
	Subject string
	// Date is the Date header field, zero when absent or unparseable.
	Date time.Time
	// Received is when the message arrived: the time in its id, or the
	// modification time of a foreign file.
	Received time.Time
	// Size is the size POP3 reports (CRLF line ends).
	Size int64
	// Attachments reports whether the message seems to carry attachments:
	// a MIME part with "Content-Disposition: attachment" or a file name
	// within the first SummaryScanBytes of the message.
	Attachments bool
	// Seen is the seen flag (the Maildir "S" flag: a file in cur/ whose
	// info has 'S').
	Seen bool
	// Tags are the recipient tags of the message (AddressTag), sorted and
	// distinct: those of the envelope recipients its trace header names
	// (X-Original-To, Delivered-To, Received "for <...>") and of its To and
	// Cc header fields.
	Tags []string
}

// SummaryScanBytes bounds how much of a message is read to summarize it.
const SummaryScanBytes = 256 << 10
