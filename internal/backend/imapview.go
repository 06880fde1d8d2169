package backend

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"postoffice/internal/store"
)

// view is the selected folder as this session's client knows it: message
// sequence numbers index msgs. It changes only at Poll and Idle (and by
// the session's own commands), so that sequence numbers stay fixed while
// a command runs, whatever other sessions, POP3, the web inbox or other
// programs do to the folder meanwhile (RFC 9051 §7.4.1).
type view struct {
	f        store.Folder
	name     string
	readOnly bool
	msgs     []store.FolderMessage // by UID ascending = by sequence number
	// owned: msgs is this view's own copy; otherwise it is the store's
	// shared state, which must not be modified (own makes a copy).
	owned bool
	// last is the state msgs was last brought up to date with: a Sync
	// that returns it again changed nothing.
	last *store.FolderState
	// gone marks messages of msgs removed from the folder but not yet
	// reported with EXPUNGE (not allowed during FETCH, STORE, SEARCH).
	gone      map[uint32]bool
	keywords  []string
	full      bool
	validity  uint32
	searchRes imap.UIDSet
}

func (v *view) close() { v.f.Close() }

// Select implements imapserver.Session (RFC 9051 §6.3.2, §6.3.3).
func (s *imapSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	name = folderName(name)
	f, err := s.b.Folders.OpenFolder(s.mailbox, name)
	if err != nil {
		return nil, s.folderErr("select", err)
	}
	st, err := f.Sync()
	if err != nil {
		f.Close()
		return nil, s.storeErr("select", err)
	}
	v := &view{f: f, name: name, readOnly: options != nil && options.ReadOnly}
	v.take(st)
	s.sel = v
	data := &imap.SelectData{
		Flags:          v.mailboxFlags(),
		PermanentFlags: v.permanentFlags(),
		NumMessages:    uint32(len(v.msgs)),
		UIDNext:        imap.UID(st.UIDNext),
		UIDValidity:    st.UIDValidity,
	}
	for i := range v.msgs {
		if !hasFlag(v.msgs[i].Flags, store.FlagSeen) {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

// take makes st the view's state.
func (v *view) take(st *store.FolderState) {
	v.msgs, v.owned, v.last = st.Messages, false, st
	v.gone = nil
	v.keywords = st.Keywords
	v.full = st.KeywordsFull
	v.validity = st.UIDValidity
}

var systemFlags = []imap.Flag{imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagSeen, imap.FlagDraft}

func (v *view) mailboxFlags() []imap.Flag {
	flags := slices.Clone(systemFlags)
	for _, k := range v.keywords {
		flags = append(flags, imap.Flag(k))
	}
	return flags
}

// permanentFlags: every flag may be stored, and new keywords while the
// folder has room for them (RFC 9051 §7.1: \* in PERMANENTFLAGS). A
// read-only folder stores none.
func (v *view) permanentFlags() []imap.Flag {
	if v.readOnly {
		return []imap.Flag{}
	}
	flags := v.mailboxFlags()
	if !v.full {
		flags = append(flags, imap.FlagWildcard)
	}
	return flags
}

// Unselect implements imapserver.Session.
func (s *imapSession) Unselect() error {
	if s.sel != nil {
		s.sel.close()
		s.sel = nil
	}
	return nil
}

// Poll implements imapserver.Session: after every command, the changes
// since the client last heard are reported (RFC 9051 §5.2, §7.4.1).
func (s *imapSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	return s.sel.update(w, allowExpunge)
}

// Idle implements imapserver.Session (RFC 2177): the folder's changes are
// reported as they happen, until the client sends DONE.
func (s *imapSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if s.sel == nil {
		<-stop
		return nil
	}
	changed := s.sel.f.Changed()
	if err := s.sel.update(w, true); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-changed:
			if err := s.sel.update(w, true); err != nil {
				return err
			}
		}
	}
}

// update syncs the folder (cheap when nothing changed) and tells the
// client what changed: EXPUNGE (only when allowed), EXISTS, FLAGS of the
// folder and FETCH FLAGS of messages whose flags changed.
func (v *view) update(w *imapserver.UpdateWriter, allowExpunge bool) error {
	st, err := v.f.Sync()
	if err != nil {
		return err
	}
	if st == v.last {
		return nil
	}
	v.own()
	now := make(map[uint32]int, len(st.Messages))
	for i := range st.Messages {
		now[st.Messages[i].UID] = i
	}
	// Removed messages, highest sequence number first, so that each
	// EXPUNGE's number is right when the client applies it.
	for i := len(v.msgs) - 1; i >= 0; i-- {
		uid := v.msgs[i].UID
		if _, ok := now[uid]; ok {
			continue
		}
		if !allowExpunge {
			if v.gone == nil {
				v.gone = make(map[uint32]bool)
			}
			v.gone[uid] = true
			continue
		}
		if err := w.WriteExpunge(uint32(i + 1)); err != nil {
			return err
		}
		v.msgs = slices.Delete(v.msgs, i, i+1)
		delete(v.gone, uid)
	}
	if !slices.Equal(st.Keywords, v.keywords) {
		v.keywords, v.full = st.Keywords, st.KeywordsFull
		if err := w.WriteMailboxFlags(v.mailboxFlags()); err != nil {
			return err
		}
	}
	// Flag changes of the messages the client knows.
	for i := range v.msgs {
		m := &v.msgs[i]
		j, ok := now[m.UID]
		if !ok {
			continue
		}
		n := &st.Messages[j]
		if !slices.Equal(m.Flags, n.Flags) {
			*m = *n
			if err := w.WriteMessageFlags(uint32(i+1), imap.UID(m.UID), imapFlags(m.Flags)); err != nil {
				return err
			}
		}
	}
	// New messages: UIDs only grow, so they are those above the last one
	// known.
	last := uint32(0)
	if len(v.msgs) > 0 {
		last = v.msgs[len(v.msgs)-1].UID
	}
	added := false
	for i := range st.Messages {
		if st.Messages[i].UID > last {
			v.msgs = append(v.msgs, st.Messages[i])
			added = true
		}
	}
	v.validity = st.UIDValidity
	if len(v.gone) == 0 {
		v.last = st
	}
	if added {
		return w.WriteNumMessages(uint32(len(v.msgs)))
	}
	return nil
}

// refreshFlags brings the flags of the messages at idx up to date before
// a FETCH FLAGS answers with them (another session, POP3 or the web inbox
// may have changed them since the last poll); the FETCH response tells
// the client. The other messages' changes wait for the poll, and messages
// come and go only at a poll.
func (v *view) refreshFlags(idx []int) error {
	st, err := v.f.Sync()
	if err != nil {
		return err
	}
	if st == v.last {
		return nil
	}
	for _, j := range idx {
		m := &v.msgs[j]
		k, ok := slices.BinarySearchFunc(st.Messages, m.UID, func(x store.FolderMessage, u uint32) int { return cmpUint(x.UID, u) })
		if ok && !slices.Equal(m.Flags, st.Messages[k].Flags) {
			v.set(j, st.Messages[k])
		}
	}
	return nil
}

// own makes msgs the view's own copy, so that it can be changed.
func (v *view) own() {
	if !v.owned {
		v.msgs = slices.Clone(v.msgs)
		v.owned = true
	}
}

// set replaces the message at index j (after the session's own change).
func (v *view) set(j int, m store.FolderMessage) {
	v.own()
	v.msgs[j] = m
	v.last = nil
}

// resolve returns the indexes into msgs of the messages numSet names, in
// sequence order. "*" is the last message (RFC 9051 §9: seq-number); a
// UID range reaching past the last UID still names the last message
// when it contains "*" (§6.4.8). Messages gone (not yet
// reported with EXPUNGE) are skipped.
func (v *view) resolve(numSet imap.NumSet) []int {
	if imap.IsSearchRes(numSet) {
		numSet = v.searchRes
	}
	var out []int
	switch set := numSet.(type) {
	case imap.SeqSet:
		n := uint32(len(v.msgs))
		for _, r := range set {
			start, stop := staticRange(r.Start, r.Stop, n)
			for seq := start; seq <= stop && seq <= n; seq++ {
				if seq >= 1 {
					out = append(out, int(seq-1))
				}
			}
		}
	case imap.UIDSet:
		for _, r := range set {
			start, stop := staticRange(uint32(r.Start), uint32(r.Stop), v.lastUID())
			lo, _ := slices.BinarySearchFunc(v.msgs, start, func(m store.FolderMessage, u uint32) int {
				return cmpUint(m.UID, u)
			})
			for i := lo; i < len(v.msgs) && v.msgs[i].UID <= stop; i++ {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out)
	out = slices.Compact(out)
	if len(v.gone) > 0 {
		out = slices.DeleteFunc(out, func(i int) bool { return v.gone[v.msgs[i].UID] })
	}
	return out
}

// staticRange resolves a range's "*" (0) to max and orders its ends
// (RFC 9051 §9: "n:m" and "m:n" are the same range).
func staticRange(start, stop, max uint32) (uint32, uint32) {
	if start == 0 {
		start = max
	}
	if stop == 0 {
		stop = max
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}

// lastUID is the UID of the last message, 0 in an empty folder.
func (v *view) lastUID() uint32 {
	if len(v.msgs) == 0 {
		return 0
	}
	return v.msgs[len(v.msgs)-1].UID
}

func cmpUint(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// uidsOf returns the UIDs of the messages at idx.
func (v *view) uidsOf(idx []int) []uint32 {
	uids := make([]uint32, len(idx))
	for i, j := range idx {
		uids[i] = v.msgs[j].UID
	}
	return uids
}

// indexOf returns the index into msgs of uid, or -1.
func (v *view) indexOf(uid uint32) int {
	i, ok := slices.BinarySearchFunc(v.msgs, uid, func(m store.FolderMessage, u uint32) int { return cmpUint(m.UID, u) })
	if !ok {
		return -1
	}
	return i
}

// hasFlag reports whether flags holds flag (flags compare without case,
// RFC 9051 §2.3.2).
func hasFlag(flags []string, flag string) bool {
	for _, f := range flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

// storeFlags converts a client's flags to the store's spelling: system
// flags canonical, \Recent dropped (it cannot be stored, RFC 3501
// §2.3.2), keywords as given.
func storeFlags(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		s := string(f)
		if strings.HasPrefix(s, `\`) {
			canon := ""
			for _, sys := range systemFlags {
				if strings.EqualFold(s, string(sys)) {
					canon = string(sys)
				}
			}
			if canon == "" {
				continue // \Recent, or an unknown system flag
			}
			s = canon
		}
		if !slices.ContainsFunc(out, func(o string) bool { return strings.EqualFold(o, s) }) {
			out = append(out, s)
		}
	}
	return out
}
