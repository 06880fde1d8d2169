package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// One mailbox, four protocols, against the real binary: what IMAP does is
// what the web API, POP3 and the files show, and the other way round.

// webMessage is the web API's summary of one message.
type webMessage struct {
	ID   string `json:"id"`
	Read bool   `json:"read"`
}

// webInbox returns the web API's listing of user's mailbox.
func webInbox(t *testing.T, w *webClient) []webMessage {
	t.Helper()
	var list struct {
		Messages []webMessage `json:"messages"`
		Total    int          `json:"total"`
	}
	if code := w.do("GET", "/api/v1/mailboxes/user/messages", "", &list); code != 200 {
		t.Fatalf("GET messages: %d", code)
	}
	if list.Total != len(list.Messages) {
		t.Fatalf("web listing: total %d, %d messages", list.Total, len(list.Messages))
	}
	return list.Messages
}

// pop3Stat logs in over POP3 and returns STAT's count and the UIDL
// listing, then QUITs (deleting nothing).
func pop3Stat(t *testing.T, p *proc) (count int, uidl string) {
	t.Helper()
	c := loginWhenFree(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	var size int64
	if _, err := fmt.Sscanf(c.Expect("+OK *"), "+OK %d %d", &count, &size); err != nil {
		t.Fatalf("STAT: %v", err)
	}
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	uidl = c.MultilineText()
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	return count, uidl
}

// The chain: deliver over SMTP → an IDLE session sees EXISTS →
// FETCH → STORE \Seen → the web API shows it read and POP3's UIDL is
// unchanged → a web "unread" reaches the IDLE session as FETCH FLAGS →
// MOVE to Archive → POP3 STAT and the web inbox no longer count it.
func TestIMAPCrossProtocolChain(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	p := start(t, "")
	web := newWebClient(t, p)
	c := dialIMAP(t, p)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	done := c.idle()
	id := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: cross\r\n\r\none mailbox, four protocols\r\n")
	c.waitEvent("EXISTS 1")
	done()

	count, uidl := pop3Stat(t, p)
	if count != 1 || uidl != "1 "+id+"\r\n" {
		t.Fatalf("POP3 before STORE: STAT %d, UIDL %q", count, uidl)
	}
	if msgs := webInbox(t, web); len(msgs) != 1 || msgs[0].ID != id || msgs[0].Read {
		t.Fatalf("web before STORE: %+v", msgs)
	}

	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %+v, %v", msgs, err)
	}
	eml, err := os.ReadFile(filepath.Join(p.dir, "user", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[0].FindBodySection(section); string(got) != string(eml) {
		t.Fatalf("FETCH BODY.PEEK[] %q, file %q", got, eml)
	}
	uid := msgs[0].UID
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatalf("STORE \\Seen: %v", err)
	}

	var view webMessage
	if code := web.do("GET", "/api/v1/mailboxes/user/messages/"+id, "", &view); code != 200 || view.ID != id || !view.Read {
		t.Fatalf("web after STORE \\Seen: %d %+v", code, view)
	}
	count, uidl = pop3Stat(t, p)
	if count != 1 || uidl != "1 "+id+"\r\n" {
		t.Fatalf("POP3 after STORE: STAT %d, UIDL %q (was %q)", count, uidl, id)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,S" {
		t.Fatalf("file after STORE \\Seen: %v", f)
	}

	// Web → IMAP: unread in the web inbox is FETCH FLAGS in IDLE, and
	// keeps the flag the web does not know.
	if err := c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatalf("STORE \\Flagged: %v", err)
	}
	done = c.idle()
	if code := web.do("PATCH", "/api/v1/mailboxes/user/messages/"+id, `{"read":false}`, nil); code != 200 {
		t.Fatalf("PATCH read=false: %d", code)
	}
	c.waitEvent(`FETCH 1 \Flagged`)
	done()
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,F" {
		t.Fatalf("file after web unread: %v", f)
	}

	moved, err := c.Move(imap.UIDSetNum(uid), "Archive").Wait()
	if err != nil {
		t.Fatalf("MOVE: %v", err)
	}
	if dst, _ := moved.DestUIDs.(imap.UIDSet).Nums(); len(dst) != 1 || dst[0] != 1 {
		t.Fatalf("COPYUID dest %v", moved.DestUIDs)
	}
	count, uidl = pop3Stat(t, p)
	if count != 0 || uidl != "" {
		t.Fatalf("POP3 after MOVE to Archive: STAT %d, UIDL %q", count, uidl)
	}
	if msgs := webInbox(t, web); len(msgs) != 0 {
		t.Fatalf("web inbox after MOVE: %+v", msgs)
	}
	// The moved message keeps its file name (the POP3 UIDL and web id) and
	// flags.
	if f := folderFiles(t, p.dir, "user", "Archive"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,F" {
		t.Fatalf("Archive after MOVE: %v", f)
	}
	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, NumUnseen: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 1 || st.NumUnseen == nil || *st.NumUnseen != 1 {
		t.Fatalf("STATUS Archive: %+v, %v", st, err)
	}
}

// inUse reports whether err is a tagged NO [INUSE].
func inUse(err error) bool {
	var e *imap.Error
	return errors.As(err, &e) && e.Type == imap.StatusResponseTypeNo && e.Code == imap.ResponseCodeInUse
}

// IMAP while POP3 holds the maildrop (RFC 1939 §8: the POP3 session's
// listing must not change under it): EXPUNGE and MOVE out of INBOX get
// NO [INUSE] and remove nothing, flags can still be changed, COPY works;
// after POP3's QUIT the same EXPUNGE and MOVE succeed.
func TestIMAPWhilePOP3HoldsMaildrop(t *testing.T) {
	p := start(t, "")
	idA := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: A\r\n\r\nfirst\r\n")
	idB := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: B\r\n\r\nsecond\r\n")
	c := dialIMAP(t, p)
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 2 {
		t.Fatalf("SELECT: %+v, %v", sel, err)
	}

	pop := login(t, p.Addr("pop3"), "user", "pass")
	pop.Send("STAT\r\n")
	pop.Expect("+OK 2 *")

	deleted := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted, imap.FlagFlagged}}
	if err := c.Store(imap.SeqSetNum(1), deleted, nil).Close(); err != nil {
		t.Fatalf("STORE while POP3 holds the maildrop: %v", err)
	}
	if err := c.Expunge().Close(); !inUse(err) {
		t.Fatalf("EXPUNGE while POP3 holds the maildrop: %v, want NO [INUSE]", err)
	}
	if _, err := c.Move(imap.SeqSetNum(2), "Archive").Wait(); !inUse(err) {
		t.Fatalf("MOVE while POP3 holds the maildrop: %v, want NO [INUSE]", err)
	}
	if _, err := c.Copy(imap.SeqSetNum(2), "Archive").Wait(); err != nil {
		t.Fatalf("COPY while POP3 holds the maildrop: %v", err)
	}
	want := []string{"cur/" + idA + ".eml:2,FT", "new/" + idB + ".eml"}
	if f := folderFiles(t, p.dir, "user", "INBOX"); !slices.Equal(f, want) {
		t.Fatalf("INBOX while POP3 holds it: %v, want %v", f, want)
	}
	if f := folderFiles(t, p.dir, "user", "Archive"); len(f) != 1 {
		t.Fatalf("Archive after the refused MOVE and the COPY: %v", f)
	}
	// POP3's snapshot is intact: both messages, the first one readable.
	pop.Send("UIDL\r\n")
	pop.Expect("+OK*")
	if got := pop.MultilineText(); got != "1 "+idA+"\r\n2 "+idB+"\r\n" {
		t.Fatalf("UIDL while IMAP tried to expunge: %q", got)
	}
	first := readFolderFile(t, p.dir, "user", "INBOX", want[0])
	pop.Send("TOP 1 10\r\n")
	pop.Expect("+OK*")
	if got := pop.MultilineText(); got != first {
		t.Fatalf("TOP 1 %q, file %q", got, first)
	}
	pop.Send("QUIT\r\n")
	pop.Expect("+OK*")

	if err := c.Expunge().Close(); err != nil {
		t.Fatalf("EXPUNGE after POP3's QUIT: %v", err)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "Archive").Wait(); err != nil {
		t.Fatalf("MOVE after POP3's QUIT: %v", err)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 0 {
		t.Fatalf("INBOX after EXPUNGE and MOVE: %v; Archive %v", f, folderFiles(t, p.dir, "user", "Archive"))
	}
	// Archive: the COPY made while POP3 held the maildrop and the message
	// moved after (under a new name, the COPY holding its own).
	archive := folderFiles(t, p.dir, "user", "Archive")
	if len(archive) != 2 || archive[0] != "new/"+idB+".eml" {
		t.Fatalf("Archive: %v", archive)
	}
	for _, f := range archive {
		if !strings.HasSuffix(readFolderFile(t, p.dir, "user", "Archive", f), "Subject: B\r\n\r\nsecond\r\n") {
			t.Fatalf("Archive %s is not B", f)
		}
	}
}

// POP3 seen from IMAP: a RETR marks the message \Seen (as Dovecot's POP3
// does), a DELE+QUIT reaches an IDLE session as EXPUNGE, and a DELE
// without QUIT (the connection dropped) removes nothing.
func TestIMAPSeesPOP3(t *testing.T) {
	p := start(t, "")
	ids := make([]string, 3)
	for i := range ids {
		ids[i] = sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: m"+strconv.Itoa(i+1)+"\r\n\r\nbody\r\n")
	}
	c := dialIMAP(t, p)
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 3 {
		t.Fatalf("SELECT: %+v, %v", sel, err)
	}
	done := c.idle()

	// A dropped POP3 session: DELE of 3, no QUIT.
	pop := login(t, p.Addr("pop3"), "user", "pass")
	pop.Send("DELE 3\r\n")
	pop.Expect("+OK*")
	pop.Close()

	pop = loginWhenFree(t, p.Addr("pop3"), "user", "pass")
	pop.Send("RETR 1\r\n")
	pop.Expect("+OK*")
	pop.MultilineText()
	c.waitEvent(`FETCH 1 \Seen`)
	pop.Send("DELE 2\r\n")
	pop.Expect("+OK*")
	pop.Send("QUIT\r\n")
	pop.Expect("+OK*")
	c.waitEvent("EXPUNGE 2")
	done()

	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 2 || !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagSeen}) || len(msgs[1].Flags) != 0 || msgs[1].UID != 3 {
		t.Fatalf("FETCH after POP3: %+v, %v", msgs, err)
	}
	want := []string{"cur/" + ids[0] + ".eml:2,S", "new/" + ids[2] + ".eml"}
	if f := folderFiles(t, p.dir, "user", "INBOX"); !slices.Equal(f, want) {
		t.Fatalf("INBOX files: %v, want %v", f, want)
	}
}

// A POP3 RETR marks the message \Seen and keeps the flags IMAP gave it
// while the POP3 session held the maildrop (its snapshot's file name is
// older than the file's).
func TestPOP3RetrKeepsIMAPFlags(t *testing.T) {
	p := start(t, "")
	id := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: A\r\n\r\nfirst\r\n")
	c := dialIMAP(t, p)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	pop := login(t, p.Addr("pop3"), "user", "pass")
	flagged := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagDeleted}}
	if err := c.Store(imap.SeqSetNum(1), flagged, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,FT" {
		t.Fatalf("after STORE: %v", f)
	}
	pop.Send("RETR 1\r\n")
	pop.Expect("+OK*")
	pop.MultilineText()
	pop.Send("QUIT\r\n")
	pop.Expect("+OK*")
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,FST" {
		t.Fatalf("after POP3 RETR: %v, want cur/%s.eml:2,FST", f, id)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 3 {
		t.Fatalf("FETCH FLAGS after POP3 RETR: %+v, %v", msgs, err)
	}
}
