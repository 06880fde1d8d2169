// Package smtp is Postoffice's SMTP protocol engine (RFC 5321 and the
// extensions it advertises). It knows nothing about disks: it talks to a
// Backend.
package smtp

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
)

// ConnInfo describes the client connection; the backend may use it for
// logging, routing policy and trace headers.
type ConnInfo struct {
	ID         string // connection id, on every log line and in error replies
	RemoteAddr net.Addr
	LocalAddr  net.Addr
	RemoteIP   netip.Addr
}

// Envelope is the state of a mail transaction when its data arrives; the
// backend uses it for trace headers and delivery.
type Envelope struct {
	Conn     ConnInfo
	Helo     string // the HELO/EHLO argument, printable ASCII (other octets are '?'); "" if none
	ESMTP    bool   // EHLO rather than HELO
	TLS      *tls.ConnectionState
	AuthUser string // authenticated identity, "" if none
	From     string // reverse-path without brackets; "" for the null path <>
	To       []string
	Body     string // "7BIT", "8BITMIME" or "BINARYMIME"
	SMTPUTF8 bool
	Size     int64 // SIZE= declared by the client, 0 if none
	Chunked  bool  // data came by BDAT
}

// Backend receives mail. Its methods are called from many sessions at
// once. Returned errors of type *Error are sent to the client as they are;
// any other error is logged and answered with a generic 451 4.3.0.
type Backend interface {
	// Mail is called for MAIL FROM, before the engine answers 250.
	Mail(ctx context.Context, env *Envelope) error
	// Rcpt checks one recipient (RCPT TO), before the engine answers 250.
	// env.To holds the recipients accepted so far, not yet this one.
	Rcpt(ctx context.Context, env *Envelope, to string) error
	// Data stores the message read from r: dot-unstuffed, CRLF line ends,
	// ending in CRLF, at most the configured size (BDAT data comes as the
	// client sent it, so it may hold bare LFs and may end in one). It returns the queue id
	// to put in "250 2.0.0 Ok: queued as <id>". When it returns nil the
	// message must be durable. If r returns an error (client gone, size
	// exceeded, timeout), Data must return an error wrapping it and store
	// nothing.
	Data(ctx context.Context, env *Envelope, r io.Reader) (id string, err error)
	// Authenticate checks a username and password (AUTH PLAIN/LOGIN).
	// It returns ErrAuthFailed for wrong credentials (it may delay first),
	// *Error to answer something specific, any other error for 454 4.7.0.
	Authenticate(ctx context.Context, c ConnInfo, username, password string) error
}
