package testsupport

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// IMAPResponse is what one IMAP command got: the untagged and continuation
// lines in order (a literal's data inlined after its "{n}" line ending, so
// that a FETCH response reads as one string), then the tagged status line
// without its tag.
type IMAPResponse struct {
	Untagged []string
	Status   string // "OK ...", "NO ...", "BAD ..."
}

// Has reports whether one untagged line matches the glob pattern.
func (r IMAPResponse) Has(pattern string) bool {
	for _, l := range r.Untagged {
		if Glob(pattern, l) {
			return true
		}
	}
	return false
}

// IMAPLine reads one IMAP response line: a line ending in a literal
// "{n}" (or "{n+}") is followed by n octets and the rest of the line,
// which are appended, so that the result is one whole response.
func (c *Conn) IMAPLine() (string, error) {
	var b strings.Builder
	for {
		l, err := c.ReadLine()
		b.WriteString(l)
		if err != nil {
			return b.String(), err
		}
		n, ok := literalSize(l)
		if !ok {
			return b.String(), nil
		}
		b.WriteString("\r\n")
		c.SetReadDeadline(time.Now().Add(Timeout))
		if _, err := io.CopyN(&b, c.R, n); err != nil {
			return b.String(), err
		}
	}
}

// literalSize returns n when l ends in "{n}" or "{n+}".
func literalSize(l string) (int64, bool) {
	if !strings.HasSuffix(l, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(l, '{')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(l[i+1:len(l)-1], "+"), 10, 64)
	return n, err == nil && n >= 0
}

// IMAPTag sends "tag command" and reads until the tagged status of tag.
func (c *Conn) IMAPTag(tag, command string) IMAPResponse {
	c.t.Helper()
	c.Send(tag + " " + command + "\r\n")
	return c.IMAPUntil(tag)
}

// IMAPUntil reads responses until the tagged status of tag.
func (c *Conn) IMAPUntil(tag string) IMAPResponse {
	c.t.Helper()
	var r IMAPResponse
	for {
		l, err := c.IMAPLine()
		if err != nil {
			c.t.Fatalf("waiting for %s: %v (got %q after %q)", tag, err, l, r.Untagged)
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			r.Status = rest
			return r
		}
		r.Untagged = append(r.Untagged, l)
	}
}

// IMAP sends command with a fresh tag and checks that its tagged status
// matches the glob pattern (e.g. "OK *", "NO [TRYCREATE]*").
func (c *Conn) IMAP(command, pattern string) IMAPResponse {
	c.t.Helper()
	c.imapTag++
	tag := fmt.Sprintf("t%d", c.imapTag)
	r := c.IMAPTag(tag, command)
	if !Glob(pattern, r.Status) {
		c.t.Fatalf("%s %s: got %q (untagged %q), want %q", tag, command, r.Status, r.Untagged, pattern)
	}
	return r
}

// IMAPLogin reads the greeting and logs in with LOGIN.
func (c *Conn) IMAPLogin(user, pass string) {
	c.t.Helper()
	c.Expect("* OK *")
	c.IMAP(fmt.Sprintf("LOGIN %q %q", user, pass), "OK *")
}
