package backend

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"postoffice/internal/store"
)

// errReadOnly answers a command that would change a folder selected with
// EXAMINE (RFC 9051 §6.3.3).
var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Folder is read-only (EXAMINE)"}

// Fetch implements imapserver.Session (RFC 9051 §6.4.5). A BODY[...]
// without .PEEK sets \Seen, durably, before the data is sent, and the
// new FLAGS go with it.
func (s *imapSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	v := s.sel
	idx := v.resolve(numSet)
	if options.Flags {
		if err := v.refreshFlags(idx); err != nil {
			return s.storeErr("fetch", err)
		}
	}
	seen := map[uint32]bool{}
	if !v.readOnly && setsSeen(options) {
		var unseen []uint32
		for _, i := range idx {
			if !hasFlag(v.msgs[i].Flags, store.FlagSeen) {
				unseen = append(unseen, v.msgs[i].UID)
			}
		}
		if len(unseen) > 0 {
			changed, err := v.f.SetFlags(unseen, store.FlagsAdd, []string{store.FlagSeen})
			if err != nil {
				return s.storeErr("fetch", err)
			}
			for _, m := range changed {
				if j := v.indexOf(m.UID); j >= 0 {
					v.set(j, m)
					seen[m.UID] = true
				}
			}
		}
	}
	for len(idx) > 0 {
		chunk := idx[:min(len(idx), prefetchChunk)]
		idx = idx[len(chunk):]
		if wantsParsed(options) {
			s.prefetch(chunk)
		}
		for _, i := range chunk {
			m := &v.msgs[i]
			if err := s.fetchOne(w, uint32(i+1), m, options, seen[m.UID]); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					// Removed by another session or program since the
					// client last heard: RFC 2180 §4.1.3 lets the server
					// leave it out; its EXPUNGE comes at the next poll.
					continue
				}
				if errors.Is(err, store.ErrUnavailable) {
					// The shared store's engine failed: a temporary
					// failure (RFC 5530 UNAVAILABLE), not a bug.
					return s.storeErr("fetch", err)
				}
				return err
			}
		}
	}
	return nil
}

// prefetchChunk is how many messages a FETCH looks up in the index at
// once: what it holds in memory is bounded by it, not by the folder.
const prefetchChunk = 256

// prefetch puts into the cache the ENVELOPE and BODYSTRUCTURE the index
// has of the messages idx of the selected folder that the cache lacks.
// Whatever the index cannot give is parsed from the file by fetchOne.
func (s *imapSession) prefetch(idx []int) {
	if s.b.FetchIndex == nil {
		return
	}
	v := s.sel
	var ids []string
	for _, i := range idx {
		m := &v.msgs[i]
		if s.b.envelopes.get(s.cacheKey(m)) == nil {
			ids = append(ids, m.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	data, err := s.b.FetchIndex.Precomputed(s.mailbox, v.name, ids)
	if err != nil {
		return // read from the files instead
	}
	for _, i := range idx {
		m := &v.msgs[i]
		if d, ok := data[m.ID]; ok {
			if p, ok := decodeFetch(d); ok {
				s.b.envelopes.put(s.cacheKey(m), p)
			}
		}
	}
}

func (s *imapSession) cacheKey(m *store.FolderMessage) envelopeKey {
	return envelopeKey{mailbox: s.mailbox, folder: s.sel.name, validity: s.sel.validity, uid: m.UID, id: m.ID}
}

func setsSeen(options *imap.FetchOptions) bool {
	for _, bs := range options.BodySection {
		if !bs.Peek {
			return true
		}
	}
	for _, bs := range options.BinarySection {
		if !bs.Peek {
			return true
		}
	}
	return false
}

// wantsParsed reports whether a FETCH sends what parseMessage gives.
func wantsParsed(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil
}

// onlyParsed reports whether ENVELOPE and BODYSTRUCTURE are the only items
// that read the message.
func onlyParsed(o *imap.FetchOptions) bool {
	return len(o.BodySection) == 0 && len(o.BinarySection) == 0 && len(o.BinarySectionSize) == 0
}

// needsContent reports whether a FETCH reads the message itself.
func needsContent(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 ||
		len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// fetchOne writes the FETCH response of one message. The message is read
// before anything is written, so that a message gone gives no half
// response.
func (s *imapSession) fetchOne(w *imapserver.FetchWriter, seq uint32, m *store.FolderMessage, o *imap.FetchOptions, flagsChanged bool) error {
	var raw []byte
	var p *parsed
	key := s.cacheKey(m)
	if wantsParsed(o) {
		p = s.b.envelopes.get(key)
	}
	if needsContent(o) && (p == nil || !onlyParsed(o)) {
		rc, err := s.sel.f.Open(m.UID)
		if err != nil {
			return err
		}
		raw = make([]byte, m.Size)
		_, err = io.ReadFull(rc, raw)
		rc.Close()
		if err != nil {
			return err
		}
	}
	rw := w.CreateMessage(seq)
	rw.WriteUID(imap.UID(m.UID))
	if o.Flags || flagsChanged {
		rw.WriteFlags(imapFlags(m.Flags))
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.Received)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if wantsParsed(o) && p == nil {
		p = parseMessage(raw)
		s.b.envelopes.put(key, p)
	}
	if o.Envelope {
		rw.WriteEnvelope(p.env)
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(p.bs)
	}
	for _, bs := range o.BodySection {
		var buf []byte
		if len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierNone && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
			buf = partial(raw, bs.Partial)
		} else {
			buf = imapserver.ExtractBodySection(bytes.NewReader(raw), bs)
		}
		if err := writeLiteral(rw.WriteBodySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		buf := imapserver.ExtractBinarySection(bytes.NewReader(raw), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(buf))), buf); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(raw), bss))
	}
	return rw.Close()
}

// partial cuts BODY[]<start.count> (RFC 9051 §6.4.5): from start, at most
// count octets; empty when start is past the end.
func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	b = b[p.Offset:]
	if p.Size < int64(len(b)) {
		b = b[:p.Size]
	}
	return b
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// envelope parses the header of raw into an ENVELOPE.
func envelope(raw []byte) *imap.Envelope {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return &imap.Envelope{}
	}
	return imapserver.ExtractEnvelope(h)
}

// Store implements imapserver.Session (RFC 9051 §6.4.6): the new flags are
// durable (the files renamed) before the FETCH responses and OK.
func (s *imapSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	idx := v.resolve(numSet)
	if len(idx) == 0 {
		return nil
	}
	op := store.FlagsSet
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	}
	changed, err := v.f.SetFlags(v.uidsOf(idx), op, storeFlags(flags.Flags))
	if err != nil {
		return s.storeErr("store", err)
	}
	for _, m := range changed {
		j := v.indexOf(m.UID)
		if j < 0 {
			continue
		}
		v.set(j, m)
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(j + 1))
		rw.WriteUID(imap.UID(m.UID))
		rw.WriteFlags(imapFlags(m.Flags))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Expunge implements imapserver.Session (RFC 9051 §6.4.3; UID EXPUNGE,
// RFC 4315 §2.1): the files of the messages marked \Deleted are removed
// and the directories fsynced before the EXPUNGE responses.
func (s *imapSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	var idx []int
	if uids != nil {
		idx = v.resolve(*uids)
	} else {
		idx = v.resolve(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	}
	if len(idx) == 0 {
		return nil
	}
	removed, err := v.f.Expunge(v.uidsOf(idx))
	if err != nil {
		return s.storeErr("expunge", err)
	}
	return v.expunged(removed, w.WriteExpunge)
}

// expunged drops the messages with the given UIDs from the view and
// reports each with write, highest sequence number first.
func (v *view) expunged(uids []uint32, write func(seq uint32) error) error {
	idx := make([]int, 0, len(uids))
	for _, u := range uids {
		if j := v.indexOf(u); j >= 0 {
			idx = append(idx, j)
		}
	}
	slices.Sort(idx)
	if len(idx) > 0 {
		v.own()
		v.last = nil
	}
	for k := len(idx) - 1; k >= 0; k-- {
		j := idx[k]
		delete(v.gone, v.msgs[j].UID)
		v.msgs = slices.Delete(v.msgs, j, j+1)
		if err := write(uint32(j + 1)); err != nil {
			return err
		}
	}
	return nil
}

// Copy implements imapserver.Session (RFC 9051 §6.4.7, COPYUID of RFC
// 4315): the copies are durable before OK.
func (s *imapSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	v := s.sel
	idx := v.resolve(numSet)
	if len(idx) == 0 {
		return nil, nil
	}
	res, err := v.f.Copy(v.uidsOf(idx), folderName(dest))
	if err != nil {
		return nil, s.copyErr("copy", err)
	}
	if len(res.Source) == 0 {
		// Every message was expunged meanwhile (by another session):
		// nothing copied, and COPYUID cannot name an empty set.
		return nil, nil
	}
	return copyData(res), nil
}

// Move implements imapserver.SessionMove (RFC 6851): COPYUID, then an
// EXPUNGE for each message moved; the move is durable before them.
func (s *imapSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	v := s.sel
	if v.readOnly {
		return errReadOnly
	}
	idx := v.resolve(numSet)
	if len(idx) == 0 {
		return nil
	}
	res, err := v.f.Move(v.uidsOf(idx), folderName(dest))
	if err != nil {
		return s.copyErr("move", err)
	}
	if len(res.Source) == 0 {
		return nil // nothing left to move (expunged meanwhile)
	}
	if err := w.WriteCopyData(copyData(res)); err != nil {
		return err
	}
	return v.expunged(res.Source, w.WriteExpunge)
}

// copyErr: a destination that does not exist gets TRYCREATE (RFC 9051
// §6.4.7).
func (s *imapSession) copyErr(op string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such folder"}
	}
	return s.folderErr(op, err)
}

func copyData(res *store.CopyResult) *imap.CopyData {
	data := &imap.CopyData{UIDValidity: res.UIDValidity}
	for i := range res.Source {
		data.SourceUIDs.AddNum(imap.UID(res.Source[i]))
		data.DestUIDs.AddNum(imap.UID(res.Dest[i]))
	}
	return data
}
