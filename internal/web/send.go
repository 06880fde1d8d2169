package web

// POST /api/v1/send: a message described in JSON is built as MIME
// (go-message) and delivered through the path of SMTP's DATA, with SMTP's
// limits and trace header. docs/api.md, "Send".

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
)

// Submitter delivers a message that did not come by SMTP through the path
// SMTP's messages take (routing, trace header, the store's durable
// Deliver): internal/backend.SMTP.Submit, wired by internal/server.
type Submitter interface {
	// Submit stores the message read from r for every recipient of s.
	// When it returns nil the message is durable. A refusal in SMTP's
	// words (an unknown recipient, the store below its free-space floor)
	// is a *SubmitError; any other error is an internal failure.
	Submit(ctx context.Context, s Submission, r io.Reader) (SubmitResult, error)
}

// Submission is the envelope of a message of POST /api/v1/send.
type Submission struct {
	From     string   // reverse-path, without brackets
	To       []string // distinct forward-paths (To, Cc and Bcc)
	SMTPUTF8 bool     // an address holds UTF-8 (RFC 6531)
	ClientIP netip.Addr
	User     string               // the logged-in user; "" for the no-login local client
	TLS      *tls.ConnectionState // the HTTP connection's, nil without TLS
}

// SubmitResult is a delivered message: its id and its mailboxes.
type SubmitResult struct {
	ID        string
	Mailboxes []string
}

// SMTPReply is an SMTP reply in an API error: "smtp" in the JSON.
type SMTPReply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced,omitempty"`
	Message  string `json:"message"`
}

func (r SMTPReply) String() string {
	s := strconv.Itoa(r.Code)
	if r.Enhanced != "" {
		s += " " + r.Enhanced
	}
	return s + " " + r.Message
}

// SubmitError is a refusal of Submit with the SMTP reply that SMTP would
// have sent; Recipient names the recipient refused, "" when the refusal
// is not one recipient's.
type SubmitError struct {
	Recipient string
	Reply     SMTPReply
}

func (e *SubmitError) Error() string {
	if e.Recipient != "" {
		return "<" + e.Recipient + ">: " + e.Reply.String()
	}
	return e.Reply.String()
}

// Send defaults: those of the SMTP engine.
const (
	defaultMaxMessageSize = 25 << 20
	defaultMaxRecipients  = 100
)

func (h *Handler) maxMessageSize() int64 {
	if h.opts.MaxMessageSize > 0 {
		return h.opts.MaxMessageSize
	}
	return defaultMaxMessageSize
}

func (h *Handler) maxRecipients() int {
	if h.opts.MaxRecipients > 0 {
		return h.opts.MaxRecipients
	}
	return defaultMaxRecipients
}

// sendBodyLimit bounds the JSON of a send: room for a message of the
// largest size as base64 (4/3) and JSON escapes, twice over, and a
// margin.
func (h *Handler) sendBodyLimit() int64 { return 2*h.maxMessageSize() + 1<<20 }

// sendRequest is the body of POST /api/v1/send.
type sendRequest struct {
	From        string            `json:"from"`
	To          []string          `json:"to"`
	Cc          []string          `json:"cc"`
	Bcc         []string          `json:"bcc"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text"`
	HTML        string            `json:"html"`
	Attachments []sendAttachment  `json:"attachments"`
	Headers     map[string]string `json:"headers"`
}

type sendAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Content     string `json:"content"` // base64 (RFC 4648 §4)
}

// reservedHeaders are the fields "headers" may not set: send writes them
// from the other members (From, To, Cc, Subject; Bcc is never written,
// RFC 5322 §3.6.3), they are the MIME structure, or they are trace fields
// that only delivery adds (RFC 5321 §4.4).
var reservedHeaders = []string{"from", "to", "cc", "bcc", "subject", "mime-version",
	"content-type", "content-transfer-encoding", "content-disposition", "return-path", "received"}

// badRequest is a 400 answer with its message.
type badRequest string

func (e badRequest) Error() string { return string(e) }

// send handles POST /api/v1/send. Any principal may send (the no-login
// local client, every logged-in user): as over SMTP, where an
// authenticated client may send from any address, and every recipient is
// a local mailbox that routing accepts.
func (h *Handler) send(w http.ResponseWriter, r *http.Request) {
	if h.opts.Submit == nil {
		writeError(w, http.StatusNotImplemented, "send is not available on this server")
		return
	}
	var req sendRequest
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d octets (twice --max-message-size, and 1MiB)", mbe.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "want a JSON object {from, to, cc, bcc, subject, text, html, attachments, headers}: "+err.Error())
		return
	}
	p := principalOf(r)
	sub := Submission{ClientIP: clientIP(r), User: p.user, TLS: r.TLS}
	msg, msgID, err := h.buildMessage(&req, &sub)
	if err != nil {
		var br badRequest
		if errors.As(err, &br) {
			writeError(w, http.StatusBadRequest, br.Error())
			return
		}
		if errors.Is(err, errTooBig) {
			// RFC 5321 §4.2.3, RFC 1870 §6.3: what SMTP answers.
			reply := SMTPReply{Code: 552, Enhanced: "5.3.4", Message: "Message size exceeds fixed limit"}
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{
				"error": fmt.Sprintf("the message is over --max-message-size (%d octets): %s", h.maxMessageSize(), reply), "smtp": reply})
			return
		}
		h.log.Error("web: building a message", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	res, err := h.opts.Submit.Submit(r.Context(), sub, bytes.NewReader(msg))
	if err != nil {
		h.submitError(w, r, err)
		return
	}
	h.log.Info("message submitted", "id", res.ID, "size", len(msg), "rcpts", len(sub.To), "from", sub.From,
		"user", p.user, "ip", sub.ClientIP.String())
	mailboxes := res.Mailboxes
	if mailboxes == nil {
		mailboxes = []string{}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": res.ID, "mailboxes": mailboxes, "message_id": msgID})
}

// submitError answers a failed Submit: a recipient refused permanently is
// 422 naming it, a temporary refusal (4xx: recipients changed, storage
// full) 503, both with the SMTP reply.
func (h *Handler) submitError(w http.ResponseWriter, r *http.Request, err error) {
	var se *SubmitError
	if !errors.As(err, &se) {
		if r.Context().Err() != nil {
			return // the client is gone
		}
		h.log.Error("web: send failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	code := http.StatusUnprocessableEntity
	if se.Reply.Code/100 == 4 {
		code = http.StatusServiceUnavailable
	}
	body := map[string]any{"error": se.Reply.String(), "smtp": se.Reply}
	if se.Recipient != "" {
		body["error"] = "recipient " + se.Recipient + " refused: " + se.Reply.String()
		body["recipient"] = se.Recipient
	}
	writeJSON(w, code, body)
}

var errTooBig = errors.New("message over the size limit")

// limitedBuffer is a buffer that refuses to grow over max octets.
type limitedBuffer struct {
	bytes.Buffer
	max int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if int64(b.Len())+int64(len(p)) > b.max {
		return 0, errTooBig
	}
	return b.Buffer.Write(p)
}

// buildMessage checks req, fills the envelope of sub and returns the MIME
// message and its Message-ID. Errors: badRequest for bad input, errTooBig
// over the size limit.
func (h *Handler) buildMessage(req *sendRequest, sub *Submission) ([]byte, string, error) {
	from, err := parseAddress("from", req.From)
	if err != nil {
		return nil, "", err
	}
	sub.From = from.Address
	// The fields in the order they are to be written: go-message writes
	// the field added last first, so they are added in reverse below.
	fields := []func(*mail.Header){
		func(h *mail.Header) { h.SetDate(time.Now()) },
		func(h *mail.Header) { h.SetAddressList("From", []*mail.Address{from}) },
	}
	seen := map[string]bool{}
	for _, list := range []struct {
		name  string
		addrs []string
	}{{"to", req.To}, {"cc", req.Cc}, {"bcc", req.Bcc}} {
		var parsed []*mail.Address
		for i, a := range list.addrs {
			addr, err := parseAddress(fmt.Sprintf("%s[%d]", list.name, i), a)
			if err != nil {
				return nil, "", err
			}
			parsed = append(parsed, addr)
			if key := strings.ToLower(addr.Address); !seen[key] {
				seen[key] = true
				sub.To = append(sub.To, addr.Address)
			}
		}
		if name := strings.ToUpper(list.name[:1]) + list.name[1:]; list.name != "bcc" && len(parsed) > 0 {
			fields = append(fields, func(h *mail.Header) { h.SetAddressList(name, parsed) })
		}
	}
	if len(sub.To) == 0 {
		return nil, "", badRequest("to, cc or bcc: at least one recipient is required")
	}
	if len(sub.To) > h.maxRecipients() {
		// What SMTP answers past --max-recipients: 452 4.5.3 (RFC 5321 §4.5.3.1.10).
		return nil, "", badRequest(fmt.Sprintf("%d recipients: at most %d (--max-recipients; SMTP answers 452 4.5.3 Error: too many recipients)", len(sub.To), h.maxRecipients()))
	}
	for _, a := range append([]string{sub.From}, sub.To...) {
		if !isASCII(a) {
			sub.SMTPUTF8 = true
		}
	}
	if strings.ContainsAny(req.Subject, "\r\n\x00") {
		return nil, "", badRequest("subject: must not hold CR, LF or NUL")
	}
	host := h.opts.Hostname
	if host == "" {
		host = "localhost"
	}
	var genErr error
	fields = append(fields,
		func(h *mail.Header) { h.SetSubject(req.Subject) },
		func(h *mail.Header) { genErr = h.GenerateMessageIDWithHostname(host) })
	var hdr mail.Header
	if err := setHeaders(&hdr, req.Headers); err != nil { // written last
		return nil, "", err
	}
	replaced := map[int]bool{0: hdr.Has("Date"), len(fields) - 1: hdr.Has("Message-Id")}
	for i := len(fields) - 1; i >= 0; i-- {
		if !replaced[i] {
			fields[i](&hdr)
		}
	}
	if genErr != nil {
		return nil, "", genErr
	}
	atts, err := decodeAttachments(req.Attachments)
	if err != nil {
		return nil, "", err
	}
	msgID, _ := hdr.MessageID()

	buf := &limitedBuffer{max: h.maxMessageSize()}
	if err := writeMIME(buf, hdr, req.Text, req.HTML, atts); err != nil {
		return nil, "", err
	}
	// The last line ends in CRLF too (RFC 5322 §2.1), as the store would
	// make it: the size checked is the size stored.
	if !bytes.HasSuffix(buf.Bytes(), []byte("\r\n")) {
		if _, err := buf.Write([]byte("\r\n")); err != nil {
			return nil, "", err
		}
	}
	return buf.Bytes(), msgID, nil
}

// parseAddress parses one address of the request, "a@b.example" or
// "Name <a@b.example>" (RFC 5322 §3.4).
func parseAddress(field, s string) (*mail.Address, error) {
	if strings.TrimSpace(s) == "" {
		return nil, badRequest(field + ": an address is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || !strings.Contains(a.Address, "@") {
		return nil, badRequest(fmt.Sprintf("%s: %q is not an address (want a@b.example or \"Name <a@b.example>\")", field, s))
	}
	return a, nil
}

// setHeaders adds the request's extra header fields. A name must be a
// field name (RFC 5322 §3.6.8: printable US-ASCII but ':') and not a
// reserved one; a value must not hold CR, LF or NUL; a value with
// non-ASCII characters is written as RFC 2047 encoded-words. Date and
// Message-ID may be replaced.
func setHeaders(hdr *mail.Header, headers map[string]string) error {
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	// Added in reverse, written in order (see buildMessage).
	slices.Sort(names)
	slices.Reverse(names)
	for _, k := range names {
		v := headers[k]
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return r < 33 || r > 126 || r == ':' }) {
			return badRequest(fmt.Sprintf("headers: %q is not a header field name", k))
		}
		if slices.Contains(reservedHeaders, strings.ToLower(k)) {
			return badRequest(fmt.Sprintf("headers: %s cannot be set there (use the request's own members; trace and MIME fields are the server's)", k))
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return badRequest(fmt.Sprintf("headers: the value of %s must not hold CR, LF or NUL", k))
		}
		if isASCII(v) {
			hdr.Set(k, v)
		} else {
			hdr.SetText(k, v)
		}
	}
	return nil
}

type attachment struct {
	filename, contentType string
	content               []byte
}

func decodeAttachments(in []sendAttachment) ([]attachment, error) {
	var out []attachment
	for i, a := range in {
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || strings.HasPrefix(mt, "multipart/") {
			return nil, badRequest(fmt.Sprintf("attachments[%d].content_type: %q is not a media type of a single part", i, a.ContentType))
		}
		if strings.ContainsAny(a.Filename, "\r\n\x00/\\") {
			return nil, badRequest(fmt.Sprintf("attachments[%d].filename: must not hold CR, LF, NUL, / or \\", i))
		}
		data, err := base64.StdEncoding.DecodeString(a.Content)
		if err != nil {
			return nil, badRequest(fmt.Sprintf("attachments[%d].content: not base64 (RFC 4648 §4): %v", i, err))
		}
		out = append(out, attachment{filename: a.Filename, contentType: mime.FormatMediaType(mt, params), content: data})
	}
	return out, nil
}

// writeMIME writes the message: one text/plain or text/html part, a
// multipart/alternative of both (RFC 2046 §5.1.4: the plain text first),
// and with attachments all of it in a multipart/mixed. Text is UTF-8 in
// quoted-printable, attachments are base64; go-message adds MIME-Version.
func writeMIME(w io.Writer, hdr mail.Header, text, html string, atts []attachment) error {
	textPart := func() mail.InlineHeader {
		var h mail.InlineHeader
		h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
		return h
	}
	htmlPart := func() mail.InlineHeader {
		var h mail.InlineHeader
		h.SetContentType("text/html", map[string]string{"charset": "utf-8"})
		return h
	}
	writeBody := func(wc io.WriteCloser, body string, err error) error {
		if err != nil {
			return err
		}
		if _, err := io.WriteString(wc, body); err != nil {
			return err
		}
		return wc.Close()
	}
	writeAlternative := func(iw *mail.InlineWriter, err error) error {
		if err != nil {
			return err
		}
		tw, err := iw.CreatePart(textPart())
		if err := writeBody(tw, text, err); err != nil {
			return err
		}
		hw, err := iw.CreatePart(htmlPart())
		if err := writeBody(hw, html, err); err != nil {
			return err
		}
		return iw.Close()
	}
	if len(atts) == 0 {
		switch {
		case text != "" && html != "":
			return writeAlternative(mail.CreateInlineWriter(w, hdr))
		case html != "":
			h := hdr.Copy()
			h.SetContentType("text/html", map[string]string{"charset": "utf-8"})
			wc, err := mail.CreateSingleInlineWriter(w, h)
			return writeBody(wc, html, err)
		default:
			h := hdr.Copy()
			h.SetContentType("text/plain", map[string]string{"charset": "utf-8"})
			wc, err := mail.CreateSingleInlineWriter(w, h)
			return writeBody(wc, text, err)
		}
	}
	mw, err := mail.CreateWriter(w, hdr)
	if err != nil {
		return err
	}
	switch {
	case text != "" && html != "":
		if err := writeAlternative(mw.CreateInline()); err != nil {
			return err
		}
	case html != "":
		wc, err := mw.CreateSingleInline(htmlPart())
		if err := writeBody(wc, html, err); err != nil {
			return err
		}
	case text != "":
		wc, err := mw.CreateSingleInline(textPart())
		if err := writeBody(wc, text, err); err != nil {
			return err
		}
	}
	for _, a := range atts {
		var ah mail.AttachmentHeader
		ah.Set("Content-Type", a.contentType)
		if a.filename != "" {
			ah.SetFilename(a.filename)
		}
		wc, err := mw.CreateAttachment(ah)
		if err != nil {
			return err
		}
		if _, err := wc.Write(a.content); err != nil {
			return err
		}
		if err := wc.Close(); err != nil {
			return err
		}
	}
	return mw.Close()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
