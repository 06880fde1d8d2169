// Package pop3 is Postoffice's POP3 protocol engine (RFC 1939, 2449, 2595,
// 5034). It knows nothing about disks: it talks to a Backend.
package pop3

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
)

// ConnInfo describes the client connection.
type ConnInfo struct {
	ID         string
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	RemoteIP   netip.Addr
	TLS        bool
}

// Errors the backend returns from Login; the engine maps them to response
// codes (RFC 2449 §8, RFC 3206).
var (
	// ErrAuthFailed: wrong user or password -> -ERR [AUTH].
	ErrAuthFailed = errors.New("pop3: authentication failed")
	// ErrInUse: maildrop locked by another session -> -ERR [IN-USE].
	ErrInUse = errors.New("pop3: maildrop in use")
	// ErrBlocked: this client is refused (too many failures) -> -ERR [AUTH]
	// and the connection is closed.
	ErrBlocked = errors.New("pop3: client blocked")
)

// Backend authenticates users and opens their maildrops. Any other error
// from Login is answered -ERR [SYS/TEMP].
type Backend interface {
	// Login checks the credentials and opens the user's maildrop with its
	// exclusive lock. On ErrAuthFailed no lock is taken. The backend applies
	// any failed-login delay itself before returning.
	Login(ctx context.Context, c ConnInfo, username, password string) (Maildrop, error)
}

// Message is one entry of a maildrop snapshot.
type Message struct {
	UID  string // UIDL: 1-70 characters of 0x21-0x7E
	Size int64  // octets Open yields (CRLF line ends), before dot-stuffing
}

// Maildrop is a locked snapshot of a mailbox for one session.
type Maildrop interface {
	// Messages is fixed for the session; message n is Messages()[n-1].
	Messages() []Message
	// Open streams message i (0-based) with CRLF line ends, ending in CRLF,
	// exactly Size octets.
	Open(i int) (io.ReadCloser, error)
	// Commit removes the messages at the given 0-based indexes durably
	// (RFC 1939 §6, UPDATE state) before returning.
	Commit(indexes []int) error
	// Close releases the lock without removing anything.
	Close() error
}

// Retriever is an optional interface of a Maildrop: the engine calls
// Retrieved after a RETR sent message i (0-based) in full, not after TOP,
// so the backend can mark it read (\Seen), as Dovecot's POP3 server does.
// It must not change the message's UID, size or number. An error is
// logged; the client's reply, already sent, does not change.
type Retriever interface {
	Retrieved(i int) error
}
