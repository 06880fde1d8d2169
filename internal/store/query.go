package store

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Query selects messages of a mailbox. Every condition given must hold,
// and several values of one field must all match. The index
// (internal/store/index) matches string conditions as word prefixes,
// ignoring case and accents; MatchSummary, for stores without one, as
// case-insensitive substrings.
type Query struct {
	// Words match From, To, Subject, the body text or an attachment's name
	// (any of them).
	Words []string
	// From, To (To and Cc) and Subject match their field.
	From, To, Subject []string
	// Text matches the message body: its decoded text and HTML parts and
	// its attachments' names.
	Text []string
	// After and Before bound the arrival time (Summary.Received):
	// After <= Received < Before. Zero means unbounded.
	After, Before time.Time
	// Larger and Smaller bound the size: Larger < Size < Smaller. Zero
	// means unbounded.
	Larger, Smaller int64
	// Seen, when non-nil, selects read (true) or unread (false) messages.
	Seen *bool
	// Attachments, when non-nil, selects messages with or without
	// attachments.
	Attachments *bool
	// Tags match the recipient tags of a message (Summary.Tags) exactly,
	// lower-cased: "t1" for mail to anything+t1@any.domain.
	Tags []string
}

// IsZero reports whether q selects every message.
func (q Query) IsZero() bool {
	return len(q.Words) == 0 && len(q.From) == 0 && len(q.To) == 0 &&
		len(q.Subject) == 0 && len(q.Text) == 0 && q.After.IsZero() &&
		q.Before.IsZero() && q.Larger == 0 && q.Smaller == 0 &&
		q.Seen == nil && q.Attachments == nil && len(q.Tags) == 0
}

// ParseQuery parses a search string of space-separated terms; a term is a
// word, a "quoted phrase", or a field:value (value quotable too):
//
//	from:alice to:bob subject:"weekly report" text:invoice
//	after:2024-05-01 before:2024-06-01 larger:10K smaller:2M
//	is:read is:unread has:attachment tag:signup-42
//
// Other words match From, To or Subject. Dates are YYYY-MM-DD (UTC) or
// RFC 3339; sizes take K or M suffixes (binary). An unknown field or a bad
// value is an error.
func ParseQuery(s string) (Query, error) {
	var q Query
	for _, t := range splitTerms(s) {
		field, val, ok := strings.Cut(t, ":")
		if !ok || val == "" || strings.ContainsAny(field, "\"") {
			q.Words = append(q.Words, strings.ToLower(strings.Trim(t, "\"")))
			continue
		}
		val = strings.Trim(val, "\"")
		lv := strings.ToLower(val)
		switch strings.ToLower(field) {
		case "from":
			q.From = append(q.From, lv)
		case "to":
			q.To = append(q.To, lv)
		case "subject":
			q.Subject = append(q.Subject, lv)
		case "text", "body":
			q.Text = append(q.Text, lv)
		case "after", "since":
			d, err := parseQueryTime(val)
			if err != nil {
				return q, err
			}
			q.After = d
		case "before":
			d, err := parseQueryTime(val)
			if err != nil {
				return q, err
			}
			q.Before = d
		case "larger":
			n, err := parseQuerySize(val)
			if err != nil {
				return q, err
			}
			q.Larger = n
		case "smaller":
			n, err := parseQuerySize(val)
			if err != nil {
				return q, err
			}
			q.Smaller = n
		case "is":
			var b bool
			switch lv {
			case "read", "seen":
				b = true
			case "unread", "unseen", "new":
			default:
				return q, fmt.Errorf("is:%s: want read or unread", val)
			}
			q.Seen = &b
		case "tag":
			if strings.ContainsAny(lv, "@\r\n") {
				return q, fmt.Errorf("tag:%s: a tag is the part of an address between + and @", val)
			}
			q.Tags = append(q.Tags, lv)
		case "has":
			if lv != "attachment" && lv != "attachments" {
				return q, fmt.Errorf("has:%s: want has:attachment", val)
			}
			b := true
			q.Attachments = &b
		default:
			return q, fmt.Errorf("unknown search field %q", field)
		}
	}
	return q, nil
}

// splitTerms splits s at spaces outside double quotes.
func splitTerms(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			cur.WriteRune(r)
		case (r == ' ' || r == '\t') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func parseQueryTime(v string) (time.Time, error) {
	if t, err := time.Parse("2006-01-02", v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is not a date (YYYY-MM-DD or RFC 3339)", v)
}

func parseQuerySize(v string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToUpper(v), "K"):
		mult, v = 1<<10, v[:len(v)-1]
	case strings.HasSuffix(strings.ToUpper(v), "M"):
		mult, v = 1<<20, v[:len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("%q is not a size (e.g. 10K, 2M)", v)
	}
	return n * mult, nil
}

// containsFold reports whether lower-cased needle is in s, ignoring case.
func containsFold(s, needle string) bool {
	return strings.Contains(strings.ToLower(s), needle)
}

// MatchSummary checks every condition of q but Text against s (a
// Browser checks Text against the body).
func (q *Query) MatchSummary(s *Summary) bool {
	to := strings.Join(s.To, ", ")
	for _, w := range q.Words {
		if !containsFold(s.From, w) && !containsFold(to, w) && !containsFold(s.Subject, w) {
			return false
		}
	}
	for _, w := range q.From {
		if !containsFold(s.From, w) {
			return false
		}
	}
	for _, w := range q.To {
		if !containsFold(to, w) {
			return false
		}
	}
	for _, w := range q.Subject {
		if !containsFold(s.Subject, w) {
			return false
		}
	}
	for _, t := range q.Tags {
		if !slices.Contains(s.Tags, t) {
			return false
		}
	}
	switch {
	case !q.After.IsZero() && s.Received.Before(q.After),
		!q.Before.IsZero() && !s.Received.Before(q.Before),
		q.Larger > 0 && s.Size <= q.Larger,
		q.Smaller > 0 && s.Size >= q.Smaller,
		q.Seen != nil && s.Seen != *q.Seen,
		q.Attachments != nil && s.Attachments != *q.Attachments:
		return false
	}
	return true
}

// MaxSearchBytes bounds how much of each message a text search reads.
const MaxSearchBytes = 1 << 20

// AddressTag returns the tag of an address: the part of its local part
// after the first '+' (the recipient delimiter of Postfix, Dovecot and
// Gmail), lower-cased, as "t1" for "Anything+T1@example.com". A quoted
// local part is taken as its value. ok is false when the address has no
// '@' or no tag.
func AddressTag(addr string) (tag string, ok bool) {
	addr = strings.TrimSpace(addr)
	if i := strings.LastIndexByte(addr, '<'); i >= 0 {
		addr = addr[i+1:]
		if j := strings.IndexByte(addr, '>'); j >= 0 {
			addr = addr[:j]
		}
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", false
	}
	local := strings.Trim(addr[:at], `"`)
	_, tag, ok = strings.Cut(local, "+")
	tag = strings.ToLower(strings.TrimSpace(tag))
	if !ok || tag == "" || strings.ContainsAny(tag, "@\r\n") {
		return "", false
	}
	return tag, true
}
