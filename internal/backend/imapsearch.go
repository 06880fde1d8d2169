package backend

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"postoffice/internal/store"
)

// Search implements imapserver.Session (RFC 9051 §6.4.4, ESEARCH of RFC
// 4731, SEARCHRES of RFC 5182). With the backend's Searcher, TEXT, BODY,
// SUBJECT, FROM and TO match words by prefix in the full-text index
// (decoded headers, text parts, HTML text, attachment names; case- and
// accent-insensitive), as Dovecot's FTS does; other strings, and all
// without a Searcher, match as case-insensitive substrings of the decoded
// header fields and text parts.
func (s *imapSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	v := s.sel
	var (
		data   imap.SearchData
		seqSet imap.SeqSet
		uidSet imap.UIDSet
	)
	ft := &fullText{b: s.b, mailbox: s.mailbox, folder: v.name}
	for i := range v.msgs {
		m := &v.msgs[i]
		if v.gone[m.UID] {
			continue
		}
		c := &candidate{v: v, seq: uint32(i + 1), m: m, ft: ft}
		ok, err := c.match(criteria)
		if err != nil {
			return nil, s.storeErr("search", err)
		}
		if !ok {
			continue
		}
		uidSet.AddNum(imap.UID(m.UID))
		num := c.seq
		if kind == imapserver.NumKindUID {
			num = m.UID
		} else {
			seqSet.AddNum(c.seq)
		}
		if data.Min == 0 || num < data.Min {
			data.Min = num
		}
		if num > data.Max {
			data.Max = num
		}
		data.Count++
	}
	if kind == imapserver.NumKindUID {
		data.All = uidSet
	} else {
		data.All = seqSet
	}
	if options != nil && options.ReturnSave {
		v.searchRes = uidSet
	}
	return &data, nil
}

// candidate is one message being matched, read at most once.
type candidate struct {
	v      *view
	ft     *fullText
	seq    uint32
	m      *store.FolderMessage
	raw    []byte
	header *textproto.Header
	read   bool
}

func (c *candidate) content() ([]byte, error) {
	if c.read {
		return c.raw, nil
	}
	rc, err := c.v.f.Open(c.m.UID)
	if errors.Is(err, store.ErrNotFound) {
		c.read = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	c.raw, err = io.ReadAll(io.LimitReader(rc, c.m.Size))
	c.read = true
	return c.raw, err
}

func (c *candidate) hdr() (mail.Header, error) {
	if c.header == nil {
		raw, err := c.content()
		if err != nil {
			return mail.Header{}, err
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
		c.header = &h
	}
	return mail.Header{Header: message.Header{Header: *c.header}}, nil
}

// match reports whether the message meets every part of crit.
func (c *candidate) match(crit *imap.SearchCriteria) (bool, error) {
	m := c.m
	for _, set := range crit.SeqNum {
		if !c.v.inSet(set, c.seq, m.UID) {
			return false, nil
		}
	}
	for _, set := range crit.UID {
		if !c.v.inSet(set, c.seq, m.UID) {
			return false, nil
		}
	}
	// RFC 9051 §6.4.4: dates compare without time of day or zone.
	if !matchDate(m.Received, crit.Since, crit.Before) {
		return false, nil
	}
	for _, f := range crit.Flag {
		if !hasFlag(m.Flags, string(f)) {
			return false, nil
		}
	}
	for _, f := range crit.NotFlag {
		if hasFlag(m.Flags, string(f)) {
			return false, nil
		}
	}
	if crit.Larger > 0 && m.Size <= crit.Larger {
		return false, nil
	}
	if crit.Smaller > 0 && m.Size >= crit.Smaller {
		return false, nil
	}
	if len(crit.Header) > 0 || !crit.SentSince.IsZero() || !crit.SentBefore.IsZero() {
		h, err := c.hdr()
		if err != nil {
			return false, err
		}
		for _, hc := range crit.Header {
			if ok, indexed, err := c.ft.match(strings.ToLower(hc.Key), hc.Value, c.m.ID); err != nil {
				return false, err
			} else if indexed {
				if !ok {
					return false, nil
				}
				continue
			}
			if !matchFields(h.FieldsByKey(hc.Key), hc.Value) {
				return false, nil
			}
		}
		if !crit.SentSince.IsZero() || !crit.SentBefore.IsZero() {
			t, err := h.Date()
			if err != nil || !matchDate(t, crit.SentSince, crit.SentBefore) {
				return false, nil
			}
		}
	}
	for _, text := range crit.Text {
		ok, indexed, err := c.ft.match("text", text, m.ID)
		if !indexed && err == nil {
			ok, err = c.matchText(text, true)
		}
		if err != nil || !ok {
			return false, err
		}
	}
	for _, body := range crit.Body {
		ok, indexed, err := c.ft.match("body", body, m.ID)
		if !indexed && err == nil {
			ok, err = c.matchText(body, false)
		}
		if err != nil || !ok {
			return false, err
		}
	}
	for i := range crit.Not {
		ok, err := c.match(&crit.Not[i])
		if err != nil || ok {
			return false, err
		}
	}
	for i := range crit.Or {
		a, err := c.match(&crit.Or[i][0])
		if err != nil {
			return false, err
		}
		if a {
			continue
		}
		b, err := c.match(&crit.Or[i][1])
		if err != nil || !b {
			return false, err
		}
	}
	return true, nil
}

// fullText answers the string keys of one SEARCH from the backend's
// Searcher, one query per distinct key and value.
type fullText struct {
	b               *IMAP
	mailbox, folder string
	sets            map[[2]string]map[string]bool
}

// match reports whether message id matches the string key (text, body,
// subject, from, to) with value; indexed is false when the index does not
// answer this key (another header field, an empty value, no Searcher).
func (ft *fullText) match(key, value, id string) (ok, indexed bool, err error) {
	if ft.b.Searcher == nil || strings.TrimSpace(value) == "" {
		return false, false, nil
	}
	var q store.Query
	v := strings.ToLower(value)
	switch key {
	case "text":
		q.Words = []string{v}
	case "body":
		q.Text = []string{v}
	case "subject":
		q.Subject = []string{v}
	case "from":
		q.From = []string{v}
	case "to":
		q.To = []string{v}
	default:
		return false, false, nil
	}
	k := [2]string{key, v}
	set, done := ft.sets[k]
	if !done {
		if set, err = ft.b.Searcher.SearchIDs(ft.mailbox, ft.folder, q); err != nil {
			return false, true, err
		}
		if ft.sets == nil {
			ft.sets = map[[2]string]map[string]bool{}
		}
		ft.sets[k] = set
	}
	return set[id], true, nil
}

// inSet reports whether the message (seq, uid) is in set, "*" being the
// last message and "$" the saved search result.
func (v *view) inSet(set imap.NumSet, seq, uid uint32) bool {
	if imap.IsSearchRes(set) {
		return v.searchRes.Contains(imap.UID(uid))
	}
	switch set := set.(type) {
	case imap.SeqSet:
		return inRanges(len(set), func(i int) (uint32, uint32) { return set[i].Start, set[i].Stop }, uint32(len(v.msgs)), seq)
	case imap.UIDSet:
		return inRanges(len(set), func(i int) (uint32, uint32) { return uint32(set[i].Start), uint32(set[i].Stop) }, v.lastUID(), uid)
	}
	return false
}

// inRanges reports whether num is in one of n ranges, 0 standing for max.
func inRanges(n int, r func(int) (uint32, uint32), max, num uint32) bool {
	for i := 0; i < n; i++ {
		start, stop := r(i)
		start, stop = staticRange(start, stop, max)
		if start <= num && num <= stop {
			return true
		}
	}
	return false
}

func matchDate(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

func matchFields(fields message.HeaderFields, pattern string) bool {
	if pattern == "" {
		return fields.Len() > 0
	}
	pattern = strings.ToLower(pattern)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), pattern) {
			return true
		}
	}
	return false
}

// matchText searches the decoded text parts (and with header, the header
// fields) for pattern (RFC 9051 §6.4.4 BODY, TEXT).
func (c *candidate) matchText(pattern string, header bool) (bool, error) {
	raw, err := c.content()
	if err != nil {
		return false, err
	}
	// message.Read returns an entity with an error it could read past
	// (an unknown charset, say); only none at all is unparseable.
	e, _ := message.Read(bytes.NewReader(raw))
	if e == nil {
		return bytes.Contains(bytes.ToLower(raw), bytes.ToLower([]byte(pattern))), nil
	}
	return matchEntity(e, strings.ToLower(pattern), header), nil
}

func matchEntity(e *message.Entity, pattern string, header bool) bool {
	if pattern == "" {
		return true
	}
	if header && matchFields(e.Header.Fields(), pattern) {
		return true
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return false
			}
			if matchEntity(part, pattern, header) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	body, err := io.ReadAll(io.LimitReader(e.Body, store.MaxSearchBytes))
	if err != nil && len(body) == 0 {
		return false
	}
	return bytes.Contains(bytes.ToLower(body), []byte(pattern))
}
