// Package backend holds the protocol backends side by side: what the SMTP
// and POP3 engines (and later IMAP) call to route, store, authenticate and
// read mail. The engines know nothing of files; the backends see only the
// store's interfaces (internal/store) and the users (internal/auth).
package backend

// This file is the SMTP backend: it routes recipients to mailboxes, adds
// the trace headers and hands the message to the store. Postoffice never
// relays: every accepted recipient is a local mailbox.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"postoffice/internal/smtp"
	"postoffice/internal/store"
)

// Directory answers who the local users are.
type Directory interface {
	// Resolve maps a recipient's local part to a user (mailbox) name.
	Resolve(localPart string) (user string, ok bool)
}

// Router decides the mailbox of a recipient.
type Router struct {
	// Single, when set, receives every recipient (the zero-config mode:
	// no users file).
	Single string
	// Users resolves local parts when Single is empty.
	Users func() Directory
	// CatchAll receives mail for unknown local parts; "" rejects them.
	CatchAll string
	// Domains, when not empty, are the only domains accepted (lowercase).
	Domains []string
	// Postmaster names the mailbox for "postmaster" when no user or alias
	// of that name exists and there is no catch-all: RFC 5321 §4.5.1 says
	// every delivering server MUST support that mailbox. "" refuses it.
	Postmaster func() string
}

// Route returns the mailbox for address addr or an *smtp.Error.
func (r *Router) Route(addr string) (string, error) {
	local, domain := splitAddress(addr)
	if local == "" {
		return "", &smtp.Error{Code: 501, Enhanced: "5.1.3", Message: "Bad recipient address syntax"}
	}
	// RFC 5321 §4.1.1.3: <postmaster> without a domain must be accepted,
	// whatever --domain lists.
	bare := domain == "" && strings.EqualFold(local, "postmaster")
	if len(r.Domains) > 0 && !bare && !containsFold(r.Domains, domain) {
		return "", &smtp.Error{Code: 550, Enhanced: "5.7.1", Message: "Relay access denied: " + sanitize(domain) + " is not a local domain"}
	}
	if r.Single != "" {
		return r.Single, nil
	}
	if r.Users != nil {
		if u, ok := r.Users().Resolve(local); ok {
			return u, nil
		}
	}
	if r.CatchAll != "" {
		return r.CatchAll, nil
	}
	if strings.EqualFold(local, "postmaster") && r.Postmaster != nil {
		if box := r.Postmaster(); box != "" {
			return box, nil
		}
	}
	return "", &smtp.Error{Code: 550, Enhanced: "5.1.1", Message: "Recipient address rejected: user unknown in local recipient table"}
}

func splitAddress(addr string) (local, domain string) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 {
		return unquote(addr), ""
	}
	return unquote(addr[:i]), strings.ToLower(addr[i+1:])
}

// unquote turns a quoted-string local part into its value (RFC 5321
// §4.1.2): "a\ b" -> a b.
func unquote(l string) string {
	if len(l) < 2 || l[0] != '"' || l[len(l)-1] != '"' {
		return l
	}
	var b strings.Builder
	for i := 1; i < len(l)-1; i++ {
		if l[i] == '\\' && i+1 < len(l)-1 {
			i++
		}
		b.WriteByte(l[i])
	}
	return b.String()
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// SMTP implements smtp.Backend on a store.
type SMTP struct {
	Store    store.Deliverer
	Router   *Router
	Auth     Authenticator // nil: AUTH always fails
	Hostname string
	Logger   *slog.Logger
	Now      func() time.Time // for tests; nil means time.Now
	// FreeSpace, if set, is asked at every MAIL whether the store has
	// room for new mail (store.Lifecycle.FreeSpace).
	FreeSpace func() error
	// Delivered, when set, is told of every message once it is durable
	// (SMTP and the HTTP API's send), before the 250 or the 201: it must
	// not block (the webhook queues it).
	Delivered func(Delivery)
}

// Delivery describes a message that Deliver made durable (for SMTP's
// Data and for the HTTP API's send).
type Delivery struct {
	ID        string
	Mailboxes []string // distinct, in recipient order
	From      string   // reverse-path, "" for <>
	To        []string
	Size      int64 // octets stored (trace header included)
	Received  time.Time
}

var _ smtp.Backend = (*SMTP)(nil)

// Mail accepts every sender: Postoffice is a mail drop, not a relay, so
// the sender is not checked. While the store is below its free-space floor
// it refuses the transaction with 452 4.3.1, as Postfix's smtpd does below
// queue_minfree: RFC 5321 §4.2.2 (452 "insufficient system storage", a
// transient failure the client retries later) and RFC 3463 §3.4 (X.3.1
// "mail system full").
func (b *SMTP) Mail(ctx context.Context, env *smtp.Envelope) error {
	if b.FreeSpace == nil {
		return nil
	}
	if err := b.FreeSpace(); err != nil {
		if b.Logger != nil {
			b.Logger.Warn("refusing mail: free space below --min-free-space", "conn", env.Conn.ID, "err", err)
		}
		return &smtp.Error{Code: 452, Enhanced: "4.3.1", Message: "Insufficient system storage (conn " + env.Conn.ID + ")"}
	}
	return nil
}

// Rcpt routes the recipient; an unknown one is refused here, before DATA.
func (b *SMTP) Rcpt(ctx context.Context, env *smtp.Envelope, to string) error {
	_, err := b.Router.Route(to)
	return err
}

// Data stores the message in the mailbox of every distinct recipient,
// behind a Return-Path and a Received header (Deliver).
func (b *SMTP) Data(ctx context.Context, env *smtp.Envelope, r io.Reader) (string, error) {
	d, err := b.Deliver(ctx, env, "", r)
	var re *RecipientError
	if errors.As(err, &re) {
		// The users file changed since RCPT accepted this recipient:
		// refuse rather than guess, but temporarily. The one reply to
		// DATA covers every recipient, and a 5xx here would bounce the
		// mail of the ones still valid; on retry the client's RCPT
		// gets the precise answer.
		return "", &smtp.Error{Code: 451, Enhanced: "4.3.0", Message: "Recipients changed, try again later (conn " + env.Conn.ID + ")"}
	}
	return d.ID, err
}

// RecipientError is a recipient that routing refused (Router.Route).
type RecipientError struct {
	Recipient string
	Err       *smtp.Error
}

func (e *RecipientError) Error() string { return "<" + e.Recipient + ">: " + e.Err.Error() }

// Unwrap gives errors.As the *smtp.Error.
func (e *RecipientError) Unwrap() error { return e.Err }

// Deliver is the one path of a message into the local mailboxes, for SMTP
// DATA and BDAT (Data) and for the HTTP API's send (Submit). It routes
// every recipient of env (the first one refused is a *RecipientError and
// nothing is stored), prepends Return-Path and Received (TraceHeader;
// with names the protocol of the "with" clause, "" derives it from env as
// for SMTP) and hands the message to the store: when Deliver returns nil
// the message is durable in every mailbox. A full disk is a 452 4.3.1
// *smtp.Error; any other failure is returned wrapped.
func (b *SMTP) Deliver(ctx context.Context, env *smtp.Envelope, with string, r io.Reader) (Delivery, error) {
	var boxes []string
	for _, to := range env.To {
		box, err := b.Router.Route(to)
		if err != nil {
			var se *smtp.Error
			if !errors.As(err, &se) {
				se = &smtp.Error{Code: 451, Enhanced: "4.3.0", Message: "Error: local error in processing"}
			}
			return Delivery{}, &RecipientError{Recipient: to, Err: se}
		}
		if !slices.Contains(boxes, box) {
			boxes = append(boxes, box)
		}
	}
	id := b.Store.NewID()
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	received := now()
	hdr := traceHeader(env, with, b.Hostname, id, received)
	if oneMailbox(boxes) {
		// Every recipient has the same mailbox (always so without a users
		// file): naming them all in its one copy reveals nothing to
		// anyone else.
		hdr += OriginalTo(env.To)
	}
	counted := &countingReader{r: io.MultiReader(strings.NewReader(hdr), r)}
	if err := b.Store.Deliver(ctx, id, boxes, counted); err != nil {
		if errors.Is(err, store.ErrNoSpace) {
			return Delivery{}, &smtp.Error{Code: 452, Enhanced: "4.3.1", Message: "Insufficient system storage (conn " + env.Conn.ID + ")"}
		}
		return Delivery{}, fmt.Errorf("deliver %s: %w", id, err)
	}
	d := Delivery{ID: id, Mailboxes: boxes, From: env.From, To: append([]string(nil), env.To...), Size: counted.n, Received: received}
	if b.Delivered != nil {
		b.Delivered(d)
	}
	return d, nil
}

// Submit delivers a message that did not come through the SMTP engine
// (the HTTP API's send: with is "HTTP" or "HTTPS"). It makes the checks
// SMTP makes at MAIL (Mail: the free-space floor, 452 4.3.1) and at RCPT
// (routing, in Deliver: the first recipient refused is a
// *RecipientError), then delivers as Data does. The caller bounds the
// message size and the recipient count, as the SMTP engine does.
func (b *SMTP) Submit(ctx context.Context, env *smtp.Envelope, with string, r io.Reader) (Delivery, error) {
	if err := b.Mail(ctx, env); err != nil {
		return Delivery{}, err
	}
	return b.Deliver(ctx, env, with, r)
}

// countingReader counts the octets read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// distinct returns list without repeats, in order.
func distinct(list []string) []string {
	out := make([]string, 0, len(list))
	for _, v := range list {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Authenticate checks credentials through the Authenticator.
func (b *SMTP) Authenticate(ctx context.Context, c smtp.ConnInfo, username, password string) error {
	if b.Auth == nil {
		return smtp.ErrAuthFailed
	}
	err := b.Auth.Check(ctx, c.RemoteIP, username, password)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrBadCredentials):
		return smtp.ErrAuthFailed
	case errors.Is(err, ErrBlocked):
		return &smtp.Error{Code: 421, Enhanced: "4.7.0", Message: "Too many failed authentications, try later (conn " + c.ID + ")"}
	}
	return err
}

// TraceHeader returns the Return-Path and Received header fields
// (RFC 5321 §4.4, RFC 5322 §3.6.7) that go before the message, with CRLF
// line ends.
func TraceHeader(env *smtp.Envelope, host, id string, t time.Time) string {
	return traceHeader(env, "", host, id, t)
}

// traceHeader is TraceHeader with the protocol of the "with" clause: ""
// derives it from env (SMTP, ESMTP, ESMTPSA, UTF8SMTP...), anything else
// (the HTTP API's "HTTP") is written as given, and then, without a HELO
// name, the "from" clause names the client by its address literal
// (RFC 5321 §4.4: Extended-Domain = address-literal FWS "(" TCP-info ")").
func traceHeader(env *smtp.Envelope, with, host, id string, t time.Time) string {
	var b strings.Builder
	// RFC 5321 §4.4: the final delivery adds Return-Path with the reverse-path.
	b.WriteString("Return-Path: <" + sanitize(env.From) + ">\r\n")
	helo := sanitize(env.Helo)
	if helo == "" && with != "" {
		helo = addrLiteral(env)
	}
	if helo == "" {
		helo = "unknown"
	}
	if with == "" {
		with = withProtocol(env)
	}
	b.WriteString("Received: from " + helo + " (" + addrLiteral(env) + ")\r\n")
	b.WriteString("\tby " + sanitize(host) + " (Postoffice) with " + sanitize(with) + " id " + id)
	if env.TLS != nil {
		b.WriteString("\r\n\t(using " + tlsVersion(env.TLS.Version) + ")")
	}
	// Naming a recipient reveals it to the others: only with one recipient,
	// as Postfix does.
	if len(env.To) == 1 {
		b.WriteString("\r\n\tfor <" + sanitize(env.To[0]) + ">")
	}
	b.WriteString("; " + t.Format("Mon, 02 Jan 2006 15:04:05 -0700") + "\r\n")
	return b.String()
}

// oneMailbox reports whether boxes name a single mailbox.
func oneMailbox(boxes []string) bool {
	for _, b := range boxes {
		if b != boxes[0] {
			return false
		}
	}
	return len(boxes) > 0
}

// OriginalTo returns one X-Original-To field per envelope recipient (the
// field Postfix's local delivery adds), with CRLF line ends, so that a
// Bcc recipient is known from the stored message: the web API's tag:
// search (anything+tag@...) finds mail by it. It follows the Received
// field, outside the trace block of RFC 5322 §3.6.7 (Return-Path, then
// Received), as an optional field may. Only for a copy that no one but
// the recipients' common mailbox sees: with several mailboxes sharing
// one file, it would show one user another's Bcc address.
func OriginalTo(rcpts []string) string {
	var b strings.Builder
	for _, to := range rcpts {
		b.WriteString("X-Original-To: " + sanitize(to) + "\r\n")
	}
	return b.String()
}

// withProtocol is the "with" keyword of RFC 3848 and RFC 6531 §3.7.3.
func withProtocol(env *smtp.Envelope) string {
	if !env.ESMTP {
		return "SMTP"
	}
	p := "ESMTP"
	if env.SMTPUTF8 {
		p = "UTF8SMTP"
	}
	if env.TLS != nil {
		p += "S"
	}
	if env.AuthUser != "" {
		p += "A"
	}
	return p
}

// addrLiteral is the TCP-info of the Received "from" clause: the client's
// address as an RFC 5321 §4.1.3 address literal.
func addrLiteral(env *smtp.Envelope) string {
	ip := env.Conn.RemoteIP.WithZone("") // a zone is not RFC 5321 address-literal syntax
	if !ip.IsValid() {
		return "unknown"
	}
	if ip.Is6() {
		return "[IPv6:" + ip.String() + "]"
	}
	return "[" + ip.String() + "]"
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0303:
		return "TLSv1.2"
	case 0x0304:
		return "TLSv1.3"
	}
	return fmt.Sprintf("TLS 0x%04x", v)
}

// sanitize keeps a client-supplied string from breaking the header: no
// control characters, no CR/LF, and parentheses, angle brackets and
// semicolons only where they cannot end a clause.
func sanitize(s string) string {
	// A header field is text (RFC 5322 §3.2.5; UTF-8 only per RFC 6532
	// §3.2): octets of no valid UTF-8 sequence, which a HELO argument may
	// hold, are replaced too.
	s = strings.ToValidUTF8(s, "_")
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '(' || c == ')' || c == ';' || c == '<' || c == '>' {
			clean = false
			break
		}
	}
	if clean && len(s) <= 255 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 255; i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '(' || c == ')' || c == ';' || c == '<' || c == '>' {
			c = '_'
		}
		b.WriteByte(c)
	}
	out := b.String()
	// Cut at a character boundary, not inside a UTF-8 sequence: the header
	// must stay valid UTF-8 (RFC 6532 §3.2).
	for len(out) < len(s) && len(out) > 0 && !utf8.RuneStart(s[len(out)]) {
		out = out[:len(out)-1]
	}
	return out
}
