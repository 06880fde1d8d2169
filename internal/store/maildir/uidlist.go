package maildir

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// uidlistName is Dovecot's Maildir UID list, one per folder directory
// (INBOX's in root/<mailbox>/). Its version 3 format:
//
//	3 V<uidvalidity> N<nextuid> G<guid, 32 hex digits>[ <other fields>]
//	<uid>[ <extension>...] :<base name>
//
// Records are by UID ascending. Extensions (Dovecot's W<vsize>, S<size>,
// G<guid>...) and unknown header fields are kept as read, so that a list
// read and written unchanged is byte for byte what Dovecot wrote.
const uidlistName = "dovecot-uidlist"

var errCorruptUIDList = errors.New("corrupt dovecot-uidlist")

// uidlist is a parsed dovecot-uidlist.
type uidlist struct {
	validity uint32
	next     uint32
	guid     string
	extra    []string // other header fields, in order
	recs     []uidRec // by uid ascending
}

// uidRec is one record of a uidlist.
type uidRec struct {
	uid  uint32
	ext  string // extensions as written between the uid and " :", or ""
	base string
}

// newUIDList returns an empty list with a fresh GUID.
func newUIDList(validity uint32) *uidlist {
	var g [16]byte
	_, _ = rand.Read(g[:])
	return &uidlist{validity: validity, next: 1, guid: hex.EncodeToString(g[:])}
}

// parseUIDList parses data. It fails (errCorruptUIDList) on anything it
// cannot trust: another version, a header without V or N, a malformed
// record, UIDs not ascending.
func parseUIDList(data []byte) (*uidlist, error) {
	bad := func(why string) error { return fmt.Errorf("%w: %s", errCorruptUIDList, why) }
	lines := strings.Split(string(data), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != "" {
		return nil, bad("no final newline")
	}
	lines = lines[:len(lines)-1]
	if len(lines) == 0 {
		return nil, bad("empty")
	}
	hdr := strings.Split(lines[0], " ")
	if hdr[0] != "3" {
		return nil, bad("version is not 3")
	}
	l := &uidlist{}
	var haveV, haveN bool
	for _, f := range hdr[1:] {
		if f == "" {
			return nil, bad("empty header field")
		}
		switch f[0] {
		case 'V':
			v, err := strconv.ParseUint(f[1:], 10, 32)
			if err != nil || v == 0 {
				return nil, bad("bad uidvalidity")
			}
			l.validity, haveV = uint32(v), true
		case 'N':
			v, err := strconv.ParseUint(f[1:], 10, 32)
			if err != nil || v == 0 {
				return nil, bad("bad next uid")
			}
			l.next, haveN = uint32(v), true
		case 'G':
			l.guid = f[1:]
		default:
			l.extra = append(l.extra, f)
		}
	}
	if !haveV || !haveN {
		return nil, bad("header lacks V or N")
	}
	var last uint32
	for _, line := range lines[1:] {
		sp := strings.IndexByte(line, ' ')
		if sp <= 0 {
			return nil, bad("record without uid")
		}
		uid, err := strconv.ParseUint(line[:sp], 10, 32)
		if err != nil || uid == 0 || uint32(uid) <= last {
			return nil, bad("uid not ascending")
		}
		rest := line[sp+1:]
		var ext, base string
		if strings.HasPrefix(rest, ":") {
			base = rest[1:]
		} else if i := strings.Index(rest, " :"); i > 0 {
			ext, base = rest[:i], rest[i+2:]
		} else {
			return nil, bad("record without file name")
		}
		if base == "" || strings.ContainsAny(base, "/\x00") {
			return nil, bad("bad file name")
		}
		last = uint32(uid)
		l.recs = append(l.recs, uidRec{uid: last, ext: ext, base: base})
	}
	if last >= l.next {
		// Tolerated, as Dovecot does: the next UID is past every UID.
		l.next = last + 1
	}
	return l, nil
}

// bytes returns the list in the version 3 format.
func (l *uidlist) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "3 V%d N%d", l.validity, l.next)
	if l.guid != "" {
		b.WriteString(" G" + l.guid)
	}
	for _, f := range l.extra {
		b.WriteString(" " + f)
	}
	b.WriteByte('\n')
	for _, r := range l.recs {
		b.WriteString(strconv.FormatUint(uint64(r.uid), 10))
		if r.ext != "" {
			b.WriteString(" " + r.ext)
		}
		b.WriteString(" :" + r.base + "\n")
	}
	return b.Bytes()
}

// validityFromHeader returns the UIDVALIDITY of a list too damaged to
// parse, if its header still says it (0 if not).
func validityFromHeader(data []byte) uint32 {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	for _, f := range strings.Fields(string(line)) {
		if strings.HasPrefix(f, "V") {
			if v, err := strconv.ParseUint(f[1:], 10, 32); err == nil {
				return uint32(v)
			}
		}
	}
	return 0
}
