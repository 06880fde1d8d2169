package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message"
	// Registers the charsets of golang.org/x/text with go-message, so text
	// parts in ISO-8859-x, windows-125x, KOI8, Shift_JIS, GB18030... are
	// decoded to UTF-8.
	"github.com/emersion/go-message/charset"

	"postoffice/internal/mailheader"
)

// Bounds on what one message view reads and returns.
const (
	// maxViewBytes: messages are parsed from at most this many octets.
	maxViewBytes = 32 << 20
	// maxBodyBytes: text and HTML bodies are cut at this size in the view.
	maxBodyBytes = 2 << 20
	// maxParts: a MIME tree stops growing here (a bomb of empty parts).
	maxParts = 500
	// maxDepth: nesting of multiparts.
	maxDepth = 20
)

// wordDecoder decodes RFC 2047 encoded words in any charset go-message
// knows.
var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// Part is one node of a message's MIME tree. Path is its IMAP-style
// section number (RFC 3501 §6.4.5): "1" for the body of a single-part
// message, "1", "2"... for the parts of a multipart, "2.1" for the first
// part of part 2.
type Part struct {
	Path        string  `json:"part"`
	ContentType string  `json:"content_type"`
	Charset     string  `json:"charset,omitempty"`
	Filename    string  `json:"filename,omitempty"`
	Disposition string  `json:"disposition,omitempty"`
	ContentID   string  `json:"content_id,omitempty"`
	Size        int64   `json:"size"`
	Parts       []*Part `json:"parts,omitempty"`
}

// Header is one header field, decoded to UTF-8.
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// parsed is a message taken apart.
type parsed struct {
	Headers     []Header
	Root        *Part
	Text        string
	HTML        string // unsanitized: never send it to a browser as is
	Attachments []*Part
	Problems    []string // what was broken and repaired or skipped
	cids        map[string]string
}

// repairHeader makes a header block that go-message can read out of broken
// mail, by package mailheader's rule (the one POP3 TOP and the CLI follow):
// when a line that is neither a header field nor a continuation comes
// before the blank line (RFC 5322 §2.1: the body is separated by an empty
// line; the classic "Subject: Test\nHello Bob" has none), an empty line is
// inserted before it; a message that ends inside its header gets one at
// the end. It reports whether it changed anything.
func repairHeader(raw []byte) ([]byte, bool) {
	pos := 0
	for pos < len(raw) {
		end := bytes.IndexByte(raw[pos:], '\n')
		var line []byte
		if end < 0 {
			line = raw[pos:]
		} else {
			line = raw[pos : pos+end]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			return raw, false
		}
		if mailheader.Ends(line, pos == 0) {
			out := make([]byte, 0, len(raw)+2)
			out = append(out, raw[:pos]...)
			out = append(out, '\r', '\n')
			return append(out, raw[pos:]...), true
		}
		if end < 0 {
			break
		}
		pos += end + 1
	}
	out := append(raw[:len(raw):len(raw)], '\r', '\n')
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		out = append(raw[:len(raw):len(raw)], '\r', '\n', '\r', '\n')
	}
	return out, true
}

// parseMessage takes raw apart. It never fails: what cannot be parsed is
// reported in Problems and the raw source remains available.
func parseMessage(raw []byte) *parsed {
	p := &parsed{cids: map[string]string{}}
	fixed, repaired := repairHeader(raw)
	if repaired {
		p.Problems = append(p.Problems, "the header block was not ended by an empty line; the first line that is not a header field starts the body")
	}
	ent, err := message.Read(bytes.NewReader(fixed))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		p.Problems = append(p.Problems, "header: "+err.Error())
		// Show the whole thing as text.
		p.Root = &Part{Path: "1", ContentType: "text/plain", Size: int64(len(raw))}
		p.Text = toUTF8(raw[:min(len(raw), maxBodyBytes)])
		return p
	}
	if err != nil {
		p.Problems = append(p.Problems, err.Error())
	}
	fields := ent.Header.Fields()
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = decodeWords(fields.Value())
		}
		p.Headers = append(p.Headers, Header{Name: fields.Key(), Value: strings.ToValidUTF8(v, "\uFFFD")})
	}
	count := 0
	p.Root = p.walk(ent, "", 0, &count)
	return p
}

// decodeWords decodes RFC 2047 encoded words, keeping what fails.
func decodeWords(v string) string {
	if d, err := wordDecoder.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// toUTF8 returns b as valid UTF-8.
func toUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// describe fills the metadata of a part from its header.
func describe(h message.Header, path string) *Part {
	part := &Part{Path: path}
	mt, params, err := h.ContentType()
	if err != nil || mt == "" {
		// RFC 2045 §5.2: default text/plain; charset=us-ascii.
		mt = "text/plain"
	}
	part.ContentType = strings.ToLower(mt)
	part.Charset = params["charset"]
	if disp, dp, err := h.ContentDisposition(); err == nil {
		part.Disposition = strings.ToLower(disp)
		part.Filename = dp["filename"]
	}
	if part.Filename == "" {
		part.Filename = params["name"]
	}
	part.Filename = sanitizeFilename(decodeWords(part.Filename))
	if cid := strings.TrimSpace(h.Get("Content-Id")); cid != "" {
		part.ContentID = strings.Trim(cid, "<>")
	}
	return part
}

// walk builds the part tree of e, reading bodies it keeps.
func (p *parsed) walk(e *message.Entity, path string, depth int, count *int) *Part {
	*count++
	self := path
	if self == "" {
		self = "1"
	}
	part := describe(e.Header, self)
	if mr := e.MultipartReader(); mr != nil && depth < maxDepth {
		for i := 1; *count < maxParts; i++ {
			child, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				p.Problems = append(p.Problems, fmt.Sprintf("part %s: %v", self, err))
				break
			}
			if err != nil {
				p.Problems = append(p.Problems, fmt.Sprintf("part %s: %v", self, err))
			}
			cp := strconv.Itoa(i)
			if path != "" {
				cp = path + "." + cp
			}
			part.Parts = append(part.Parts, p.walk(child, cp, depth+1, count))
		}
		return part
	}
	isBody := strings.HasPrefix(part.ContentType, "text/") && part.Disposition != "attachment" && part.Filename == ""
	switch {
	case isBody && part.ContentType == "text/plain" && p.Text == "":
		b, n, err := readBounded(e.Body, maxBodyBytes)
		part.Size = n
		p.Text = toUTF8(b)
		p.noteErr(self, err)
	case isBody && part.ContentType == "text/html" && p.HTML == "":
		b, n, err := readBounded(e.Body, maxBodyBytes)
		part.Size = n
		p.HTML = toUTF8(b)
		p.noteErr(self, err)
	default:
		n, err := io.Copy(io.Discard, e.Body)
		part.Size = n
		p.noteErr(self, err)
		if !isBody || part.ContentType != "text/plain" && part.ContentType != "text/html" {
			p.Attachments = append(p.Attachments, part)
		}
	}
	if part.ContentID != "" {
		p.cids[part.ContentID] = self
	}
	return part
}

func (p *parsed) noteErr(path string, err error) {
	if err != nil {
		p.Problems = append(p.Problems, fmt.Sprintf("part %s: %v", path, err))
	}
}

// readBounded reads r to EOF, keeping at most limit octets, and returns
// the total length.
func readBounded(r io.Reader, limit int) ([]byte, int64, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, int64(limit)))
	if err != nil {
		return buf.Bytes(), n, err
	}
	rest, err := io.Copy(io.Discard, r)
	return buf.Bytes(), n + rest, err
}

// openPart finds the part at path in raw and returns its header and
// decoded body (transfer encoding undone; text converted to UTF-8).
func openPart(raw []byte, path string) (*Part, io.Reader, error) {
	fixed, _ := repairHeader(raw)
	ent, err := message.Read(bytes.NewReader(fixed))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		if path == "1" {
			return &Part{Path: "1", ContentType: "text/plain"}, bytes.NewReader(raw), nil
		}
		return nil, nil, errNoPart
	}
	steps := strings.Split(path, ".")
	for _, s := range steps {
		if n, err := strconv.Atoi(s); err != nil || n < 1 || n > maxParts || strconv.Itoa(n) != s {
			return nil, nil, errNoPart
		}
	}
	if ent.MultipartReader() == nil {
		if path != "1" {
			return nil, nil, errNoPart
		}
		return describe(ent.Header, path), ent.Body, nil
	}
	cur := ent
	for depth, s := range steps {
		mr := cur.MultipartReader()
		if mr == nil || depth >= maxDepth {
			return nil, nil, errNoPart
		}
		n, _ := strconv.Atoi(s)
		var child *message.Entity
		for i := 1; i <= n; i++ {
			c, err := mr.NextPart()
			if err != nil && (c == nil || !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return nil, nil, errNoPart
			}
			child = c
		}
		cur = child
	}
	if cur.MultipartReader() != nil {
		return nil, nil, errNoPart // a container has no content of its own
	}
	return describe(cur.Header, path), cur.Body, nil
}

var errNoPart = errors.New("no such part")

// badFilename matches what a downloaded file name must not contain.
var badFilename = regexp.MustCompile(`[\x00-\x1f\x7f/\\:*?"<>|]+`)

// sanitizeFilename makes a part's file name safe to offer for download.
func sanitizeFilename(s string) string {
	s = badFilename.ReplaceAllString(strings.ToValidUTF8(s, ""), "_")
	s = strings.Trim(s, ". ")
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}

// envelope is what the trace headers tell of the SMTP envelope: the
// Return-Path (RFC 5321 §4.4) and the recipients named in "for <...>" of the
// Received fields, or in Delivered-To / X-Original-To.
func envelope(hs []Header) (returnPath string, rcpts []string) {
	for _, h := range hs {
		switch strings.ToLower(h.Name) {
		case "return-path":
			if returnPath == "" {
				returnPath = strings.Trim(strings.TrimSpace(h.Value), "<>")
			}
		case "delivered-to", "x-original-to":
			rcpts = appendUnique(rcpts, strings.TrimSpace(h.Value))
		case "received":
			if m := forRe.FindStringSubmatch(h.Value); m != nil {
				rcpts = appendUnique(rcpts, m[1])
			}
		}
	}
	return returnPath, rcpts
}

var forRe = regexp.MustCompile(`(?i)\bfor\s+<([^>\s]+)>`)

func appendUnique(s []string, v string) []string {
	for _, x := range s {
		if strings.EqualFold(x, v) {
			return s
		}
	}
	return append(s, v)
}

// formatAddressList renders an address header for display.
func formatAddressList(v string) []string {
	list, err := mail.ParseAddressList(v)
	if err != nil {
		if v = strings.TrimSpace(v); v != "" {
			return []string{v}
		}
		return nil
	}
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.String()
	}
	return out
}
