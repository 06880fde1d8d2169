package backend

// This file keeps the ENVELOPE and BODYSTRUCTURE of a message in the
// store's index, so that FETCH of those items (what a client's first sync
// of a large folder asks for) reads no message file once a folder is
// indexed. The index stores the bytes PrecomputeFetch returns and never
// looks inside them.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// FetchIndex gives the precomputed FETCH data of messages (the store's
// index, filled with PrecomputeFetch).
type FetchIndex interface {
	// Precomputed returns PrecomputeFetch of the messages of a folder
	// named by ids, for those the index has; the others are missing.
	Precomputed(mailbox, folder string, ids []string) (map[string][]byte, error)
}

// parsed is what FETCH parses from a message: its ENVELOPE and its
// BODYSTRUCTURE (the extended form, which also gives BODY).
type parsed struct {
	env *imap.Envelope
	bs  imap.BodyStructure
}

// parseMessage parses the ENVELOPE and BODYSTRUCTURE of raw.
func parseMessage(raw []byte) *parsed {
	bs := imapserver.ExtractBodyStructure(bytes.NewReader(raw))
	fillEmptyMultiparts(bs, 0)
	return &parsed{env: envelope(raw), bs: bs}
}

// fillEmptyMultiparts gives every multipart without a part (a boundary
// that never occurs) one empty text/plain part, as Dovecot answers:
// RFC 9051 §7.5.2's body-type-mpart has at least one body, and the
// engine refuses to write one without.
func fillEmptyMultiparts(bs imap.BodyStructure, depth int) {
	if depth > maxFetchDepth {
		return
	}
	switch bs := bs.(type) {
	case *imap.BodyStructureMultiPart:
		if len(bs.Children) == 0 {
			part := &imap.BodyStructureSinglePart{Type: "text", Subtype: "plain",
				Params: map[string]string{"charset": "us-ascii"}, Encoding: "7bit",
				Text: &imap.BodyStructureText{}}
			if bs.Extended != nil {
				part.Extended = &imap.BodyStructureSinglePartExt{}
			}
			bs.Children = []imap.BodyStructure{part}
		}
		for _, c := range bs.Children {
			fillEmptyMultiparts(c, depth+1)
		}
	case *imap.BodyStructureSinglePart:
		if bs.MessageRFC822 != nil {
			fillEmptyMultiparts(bs.MessageRFC822.BodyStructure, depth+1)
		}
	}
}

// fetchDataVersion is the first octet of PrecomputeFetch's encoding; data
// of another version is ignored (the message is parsed from its file).
const fetchDataVersion = 1

// PrecomputeFetch returns the ENVELOPE and BODYSTRUCTURE of the message
// raw, encoded for the index (index.Options.Precompute). The encoding
// keeps every string octet for octet (a header may hold octets that are
// not UTF-8), and nil apart from empty, so that what FETCH writes from it
// is what it writes from the message.
func PrecomputeFetch(raw []byte) []byte {
	return encodeParsed(parseMessage(raw))
}

func encodeParsed(p *parsed) []byte {
	e := fetchEncoder{buf: make([]byte, 0, 512)}
	e.buf = append(e.buf, fetchDataVersion)
	e.envelope(p.env)
	e.bodyStructure(p.bs)
	return e.buf
}

// decodeFetch decodes PrecomputeFetch's data; ok is false for data that
// is not of this version or is damaged.
func decodeFetch(data []byte) (p *parsed, ok bool) {
	if len(data) == 0 || data[0] != fetchDataVersion {
		return nil, false
	}
	d := fetchDecoder{buf: data[1:]}
	p = &parsed{env: d.envelope(), bs: d.bodyStructure(0)}
	if d.err != nil || len(d.buf) != 0 {
		return nil, false
	}
	return p, true
}

type fetchEncoder struct{ buf []byte }

func (e *fetchEncoder) uint(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }
func (e *fetchEncoder) int(v int64)   { e.buf = binary.AppendVarint(e.buf, v) }
func (e *fetchEncoder) bool(v bool) {
	if v {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

func (e *fetchEncoder) string(s string) {
	e.uint(uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// count writes the length of a slice or map, one more than it, 0 for nil.
func (e *fetchEncoder) count(n int, isNil bool) {
	if isNil {
		e.uint(0)
	} else {
		e.uint(uint64(n) + 1)
	}
}

func (e *fetchEncoder) strings(l []string) {
	e.count(len(l), l == nil)
	for _, s := range l {
		e.string(s)
	}
}

func (e *fetchEncoder) params(m map[string]string) {
	e.count(len(m), m == nil)
	for _, k := range slices.Sorted(maps.Keys(m)) {
		e.string(k)
		e.string(m[k])
	}
}

func (e *fetchEncoder) addresses(l []imap.Address) {
	e.count(len(l), l == nil)
	for _, a := range l {
		e.string(a.Name)
		e.string(a.Mailbox)
		e.string(a.Host)
	}
}

func (e *fetchEncoder) envelope(env *imap.Envelope) {
	e.bool(env != nil)
	if env == nil {
		return
	}
	e.bool(!env.Date.IsZero())
	if !env.Date.IsZero() {
		_, off := env.Date.Zone()
		e.int(env.Date.Unix())
		e.uint(uint64(env.Date.Nanosecond()))
		e.int(int64(off))
	}
	e.string(env.Subject)
	for _, l := range [][]imap.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		e.addresses(l)
	}
	e.strings(env.InReplyTo)
	e.string(env.MessageID)
}

func (e *fetchEncoder) disposition(d *imap.BodyStructureDisposition) {
	e.bool(d != nil)
	if d != nil {
		e.string(d.Value)
		e.params(d.Params)
	}
}

func (e *fetchEncoder) bodyStructure(bs imap.BodyStructure) {
	switch bs := bs.(type) {
	case *imap.BodyStructureSinglePart:
		e.buf = append(e.buf, 'S')
		e.string(bs.Type)
		e.string(bs.Subtype)
		e.params(bs.Params)
		e.string(bs.ID)
		e.string(bs.Description)
		e.string(bs.Encoding)
		e.uint(uint64(bs.Size))
		e.bool(bs.MessageRFC822 != nil)
		if m := bs.MessageRFC822; m != nil {
			e.envelope(m.Envelope)
			e.bodyStructure(m.BodyStructure)
			e.int(m.NumLines)
		}
		e.bool(bs.Text != nil)
		if bs.Text != nil {
			e.int(bs.Text.NumLines)
		}
		e.bool(bs.Extended != nil)
		if x := bs.Extended; x != nil {
			e.disposition(x.Disposition)
			e.strings(x.Language)
			e.string(x.Location)
		}
	case *imap.BodyStructureMultiPart:
		e.buf = append(e.buf, 'M')
		e.count(len(bs.Children), bs.Children == nil)
		for _, c := range bs.Children {
			e.bodyStructure(c)
		}
		e.string(bs.Subtype)
		e.bool(bs.Extended != nil)
		if x := bs.Extended; x != nil {
			e.params(x.Params)
			e.disposition(x.Disposition)
			e.strings(x.Language)
			e.string(x.Location)
		}
	default:
		e.buf = append(e.buf, 0)
	}
}

var errFetchData = errors.New("damaged precomputed FETCH data")

// maxFetchDepth bounds the nesting decoded (go-message parses no deeper).
const maxFetchDepth = 100

type fetchDecoder struct {
	buf []byte
	err error
}

func (d *fetchDecoder) fail() { d.err, d.buf = errFetchData, nil }

func (d *fetchDecoder) uint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *fetchDecoder) int() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *fetchDecoder) bool() bool {
	if len(d.buf) == 0 {
		d.fail()
		return false
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v == 1
}

func (d *fetchDecoder) string() string {
	n := d.uint()
	if n > uint64(len(d.buf)) {
		d.fail()
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// count reads what fetchEncoder.count wrote: -1 for nil. A count larger
// than what is left cannot be right.
func (d *fetchDecoder) count() int {
	n := d.uint()
	if n == 0 {
		return -1
	}
	if n-1 > uint64(len(d.buf)) {
		d.fail()
		return -1
	}
	return int(n - 1)
}

func (d *fetchDecoder) strings() []string {
	n := d.count()
	if n < 0 {
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.string()
	}
	return l
}

func (d *fetchDecoder) params() map[string]string {
	n := d.count()
	if n < 0 {
		return nil
	}
	m := make(map[string]string, n)
	for range n {
		k := d.string()
		m[k] = d.string()
	}
	return m
}

func (d *fetchDecoder) addresses() []imap.Address {
	n := d.count()
	if n < 0 {
		return nil
	}
	l := make([]imap.Address, n)
	for i := range l {
		l[i] = imap.Address{Name: d.string(), Mailbox: d.string(), Host: d.string()}
	}
	return l
}

func (d *fetchDecoder) envelope() *imap.Envelope {
	if !d.bool() {
		return nil
	}
	env := &imap.Envelope{}
	if d.bool() {
		sec, nsec, off := d.int(), d.uint(), d.int()
		env.Date = time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(off)))
	}
	env.Subject = d.string()
	for _, l := range []*[]imap.Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		*l = d.addresses()
	}
	env.InReplyTo = d.strings()
	env.MessageID = d.string()
	return env
}

func (d *fetchDecoder) disposition() *imap.BodyStructureDisposition {
	if !d.bool() {
		return nil
	}
	return &imap.BodyStructureDisposition{Value: d.string(), Params: d.params()}
}

func (d *fetchDecoder) bodyStructure(depth int) imap.BodyStructure {
	if len(d.buf) == 0 || depth > maxFetchDepth {
		d.fail()
		return nil
	}
	tag := d.buf[0]
	d.buf = d.buf[1:]
	switch tag {
	case 'S':
		bs := &imap.BodyStructureSinglePart{Type: d.string(), Subtype: d.string(), Params: d.params(),
			ID: d.string(), Description: d.string(), Encoding: d.string()}
		bs.Size = uint32(d.uint())
		if d.bool() {
			bs.MessageRFC822 = &imap.BodyStructureMessageRFC822{Envelope: d.envelope(), BodyStructure: d.bodyStructure(depth + 1)}
			bs.MessageRFC822.NumLines = d.int()
		}
		if d.bool() {
			bs.Text = &imap.BodyStructureText{NumLines: d.int()}
		}
		if d.bool() {
			bs.Extended = &imap.BodyStructureSinglePartExt{Disposition: d.disposition(), Language: d.strings(), Location: d.string()}
		}
		return bs
	case 'M':
		bs := &imap.BodyStructureMultiPart{}
		if n := d.count(); n >= 0 {
			bs.Children = make([]imap.BodyStructure, n)
			for i := range bs.Children {
				if bs.Children[i] = d.bodyStructure(depth + 1); d.err != nil {
					return nil
				}
			}
		}
		bs.Subtype = d.string()
		if d.bool() {
			bs.Extended = &imap.BodyStructureMultiPartExt{Params: d.params(), Disposition: d.disposition(),
				Language: d.strings(), Location: d.string()}
		}
		return bs
	case 0:
		return nil
	}
	d.fail()
	return nil
}
