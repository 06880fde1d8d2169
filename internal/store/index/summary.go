package index

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/mail"
	"regexp"
	"slices"
	"strings"

	"postoffice/internal/mailheader"
	"postoffice/internal/store"
)

// maxHeaderField bounds one unfolded header field kept while summarizing.
const maxHeaderField = 8 << 10

// summarize reads the header of a message from r (at most
// store.SummaryScanBytes in all) and fills the header fields of s. The
// header ends by internal/mailheader's rule, as for POP3 TOP and the CLI:
// at an empty line or one that is neither a field nor a continuation (the
// classic "Subject: x\nHello" with no blank line). Bare LF is accepted,
// and undecodable encoded words are kept as they are.
func summarize(r io.Reader, s *store.Summary, dec *mime.WordDecoder) error {
	br := bufio.NewReaderSize(io.LimitReader(r, store.SummaryScanBytes), 16<<10)
	var (
		fields   []string // unfolded header fields
		cur      []byte
		inBody   bool
		seenLine bool // a line was read
		ctype    string
		attach   bool
		partHdr  bool // inside a body part's header
	)
	flush := func() {
		if len(cur) > 0 {
			fields = append(fields, string(cur))
			cur = cur[:0]
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// An over-long line: keep its start, skip the rest.
			line = append([]byte(nil), line[:min(len(line), maxHeaderField)]...)
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
		}
		line = bytes.TrimRight(line, "\r\n")
		if !inBody {
			first := !seenLine
			seenLine = true
			switch {
			case mailheader.Ends(line, first):
				// The empty line, or a line that is neither a field nor a
				// continuation: the body starts here (the one rule of
				// internal/mailheader, as POP3 TOP and the CLI).
				flush()
				inBody = true
			case line[0] == ' ' || line[0] == '\t':
				if len(cur) > 0 && len(cur) < maxHeaderField {
					cur = append(cur, ' ')
					cur = append(cur, bytes.TrimLeft(line, " \t")...)
				}
			default:
				flush()
				cur = append(cur, line[:min(len(line), maxHeaderField)]...)
			}
			if inBody {
				for _, f := range fields {
					if k, v, ok := strings.Cut(f, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "content-type") {
						ctype = strings.ToLower(strings.TrimSpace(v))
					}
				}
				if !strings.HasPrefix(ctype, "multipart/") {
					break
				}
			}
		} else if !attach {
			// Look for attachments in the part headers of a multipart body.
			l := strings.ToLower(string(line[:min(len(line), 512)]))
			switch {
			case strings.HasPrefix(l, "--"):
				partHdr = true
			case len(l) == 0:
				partHdr = false
			case partHdr && (strings.HasPrefix(l, "content-disposition:") && strings.Contains(l, "attachment") ||
				strings.Contains(l, "filename=") || strings.Contains(l, "filename*=")):
				attach = true
			}
			if attach {
				break
			}
		}
		if err != nil {
			if err == io.EOF {
				break
			}
			return err
		}
	}
	flush()
	s.Attachments = attach
	for _, f := range fields {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "from":
			if s.From == "" {
				s.From = decodeHeader(dec, v)
			}
		case "to", "cc":
			s.To = append(s.To, splitAddresses(decodeHeader(dec, v))...)
		case "subject":
			if s.Subject == "" {
				s.Subject = decodeHeader(dec, v)
			}
		case "date":
			if t, err := mail.ParseDate(v); err == nil {
				s.Date = t
			}
		}
	}
	s.Tags = headerTags(fields, dec)
	return nil
}

// forClause finds the recipient of a Received field's "for <...>" clause.
var forClause = regexp.MustCompile(`(?i)\bfor\s+<([^>\s]+)>`)

// headerTags returns the recipient tags (store.AddressTag) of a message
// from its unfolded header fields, sorted and distinct: those of the
// envelope recipients named by X-Original-To and Delivered-To (which the
// SMTP backend adds per recipient when every recipient has the same
// mailbox) and by the "for <...>" clause of Received, and those of To and
// Cc.
func headerTags(fields []string, dec *mime.WordDecoder) []string {
	var tags []string
	add := func(addr string) {
		if t, ok := store.AddressTag(addr); ok && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	for _, f := range fields {
		k, v, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "x-original-to", "delivered-to":
			add(v)
		case "received":
			if m := forClause.FindStringSubmatch(v); m != nil {
				add(m[1])
			}
		case "to", "cc":
			for _, a := range splitAddresses(decodeHeader(dec, strings.TrimSpace(v))) {
				add(a)
			}
		}
	}
	slices.Sort(tags)
	return tags
}

// tagsColumn is the tags column of msgs for tags: each tag between
// newlines, so that a tag matches as "\n" + tag + "\n"; "" for none.
func tagsColumn(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return "\n" + strings.Join(tags, "\n") + "\n"
}

// decodeHeader decodes the RFC 2047 encoded words of v and makes the
// result valid UTF-8.
func decodeHeader(dec *mime.WordDecoder, v string) string {
	if d, err := dec.DecodeHeader(v); err == nil {
		v = d
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

// splitAddresses splits an address list at the commas outside quotes and
// angle brackets.
func splitAddresses(v string) []string {
	var out []string
	quoted, angle, start := false, 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '\\':
			i++
		case '<':
			if !quoted {
				angle++
			}
		case '>':
			if !quoted && angle > 0 {
				angle--
			}
		case ',':
			if !quoted && angle == 0 {
				if a := strings.TrimSpace(v[start:i]); a != "" {
					out = append(out, a)
				}
				start = i + 1
			}
		}
	}
	if start < len(v) {
		if a := strings.TrimSpace(v[start:]); a != "" {
			out = append(out, a)
		}
	}
	return out
}
