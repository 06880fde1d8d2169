package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"postoffice/internal/testsupport"
)

// Real IMAP clients against the real binary: each must see a server as
// good as Dovecot. The tools come from the distribution (.ci/run installs
// them); a test skips only when its tool is absent.

// folderFiles returns the base names of the message files of one folder
// of user's Maildir ("" or "INBOX" for the inbox, else a Maildir++ folder
// such as "Archive"), with the subdirectory in front ("new/…", "cur/…"),
// sorted.
func folderFiles(t *testing.T, dir, user, folder string) []string {
	requireMaildir(t, "reads the files of a Maildir folder")
	t.Helper()
	root := filepath.Join(dir, user)
	if folder != "" && folder != "INBOX" {
		root = filepath.Join(root, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(root, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// flagsOf returns the Maildir info letters of a file name ("cur/x:2,FS" →
// "FS"; a file without ":2," → "").
func flagsOf(name string) string {
	if _, f, ok := strings.Cut(name, ":2,"); ok {
		return f
	}
	return ""
}

// readFolderFile returns the content of one file named by folderFiles.
func readFolderFile(t *testing.T, dir, user, folder, name string) string {
	requireMaildir(t, "reads a Maildir folder file")
	t.Helper()
	root := filepath.Join(dir, user)
	if folder != "" && folder != "INBOX" {
		root = filepath.Join(root, "."+folder)
	}
	b, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Python's imaplib through a whole session: LOGIN, LIST, SELECT, FETCH,
// STORE, SEARCH, COPY, UID MOVE, APPEND, EXPUNGE, LOGOUT; then the files
// on disk say the same.
func TestIMAPImaplibSessionOnDisk(t *testing.T) {
	py := need(t, "python3")
	p := start(t, "")
	sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: one\r\n\r\nfirst body\r\n")
	sendRaw(t, p.Addr("smtp"), "carol@example.com", []string{"bob@example.com"}, "Subject: two\r\n\r\nsecond body\r\n..dotted\r\n")
	host, port := hostPort(t, p.Addr("imap"))
	script := `
import imaplib, re, sys
M = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
assert "IMAP4REV1" in M.capabilities and "AUTH=PLAIN" in M.capabilities, M.capabilities
typ, _ = M.login("user", "pass"); assert typ == "OK"
typ, data = M.capability(); caps = data[0].decode().split()
assert "MOVE" in caps and "UIDPLUS" in caps and "IDLE" in caps, caps
typ, lines = M.list(); assert typ == "OK"
names = sorted(re.match(rb'\(.*?\) "(.)" "?([^"]*)"?$', l).group(2).decode() for l in lines)
print("list", " ".join(names))
typ, data = M.select("INBOX"); assert typ == "OK"; print("select", data[0].decode())
typ, data = M.fetch("1:2", "(RFC822 FLAGS)"); assert typ == "OK"
for item in data:
    if isinstance(item, tuple):
        head, body = item
        print("fetch", re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode() or "-",
              "second body\r\n.dotted\r\n" in body.decode() or "first body\r\n" in body.decode())
typ, data = M.fetch("1:2", "(FLAGS)"); print("seen", b" ".join(data).decode().count("\\Seen"))
typ, data = M.store("1", "+FLAGS", "(\\Flagged)"); assert typ == "OK", data
typ, data = M.search(None, "FLAGGED"); print("search flagged", data[0].decode())
typ, data = M.search(None, "SUBJECT", '"two"'); print("search subject", data[0].decode())
typ, data = M.search(None, "BODY", "dotted"); print("search body", data[0].decode())
typ, data = M.copy("1", "Archive"); print("copy", typ, b"COPYUID" in data[0])
typ, data = M.uid("FETCH", "2", "(UID)"); uid = re.search(rb"UID (\d+)", data[0]).group(1).decode()
typ, data = M.uid("MOVE", uid, "Trash"); print("move", typ)
typ, data = M.append("Drafts", "(\\Draft)", None, b"Subject: draft\r\n\r\nnot sent yet\r\n"); print("append", typ, b"APPENDUID" in data[0])
typ, data = M.status("Drafts", "(MESSAGES)"); print("status", data[0].decode())
typ, data = M.store("1", "+FLAGS", "(\\Deleted)"); assert typ == "OK"
typ, data = M.expunge(); print("expunge", typ, data)  # the MOVE's EXPUNGE of 2, then 1
typ, data = M.select("INBOX"); print("select", data[0].decode())
M.close(); typ, _ = M.logout(); print("logout", typ)
`
	got := runTool(t, "", py, "-c", script, host, port)
	want := `list Archive Drafts INBOX Junk Sent Trash
select 2
fetch \Seen True
fetch \Seen True
seen 2
search flagged 1
search subject 2
search body 2
copy OK True
move OK
append OK True
status "Drafts" (MESSAGES 1)
expunge OK [b'2', b'1']
select 0
logout BYE
`
	if got != want {
		t.Fatalf("imaplib said:\n%s\nwant:\n%s", got, want)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 0 {
		t.Errorf("INBOX after EXPUNGE and MOVE: %v", f)
	}
	archive := folderFiles(t, p.dir, "user", "Archive")
	if len(archive) != 1 || flagsOf(archive[0]) != "FS" || !strings.Contains(readFolderFile(t, p.dir, "user", "Archive", archive[0]), "Subject: one\r\n") {
		t.Errorf("Archive: %v", archive)
	}
	trash := folderFiles(t, p.dir, "user", "Trash")
	if len(trash) != 1 || flagsOf(trash[0]) != "S" || !strings.Contains(readFolderFile(t, p.dir, "user", "Trash", trash[0]), "Subject: two\r\n") {
		t.Errorf("Trash: %v", trash)
	}
	drafts := folderFiles(t, p.dir, "user", "Drafts")
	if len(drafts) != 1 || flagsOf(drafts[0]) != "D" || readFolderFile(t, p.dir, "user", "Drafts", drafts[0]) != "Subject: draft\r\n\r\nnot sent yet\r\n" {
		t.Errorf("Drafts: %v", drafts)
	}
}

// imapSession is a go-imap v2 client logged in to a running binary, with
// the unsolicited responses it receives ("EXISTS 3", "EXPUNGE 1",
// "FETCH 2 \Seen \Flagged") on a channel.
type imapSession struct {
	*imapclient.Client
	t      *testing.T
	events chan string
}

func dialIMAP(t *testing.T, p *proc) *imapSession {
	t.Helper()
	s := &imapSession{t: t, events: make(chan string, 64)}
	send := func(ev string) {
		select {
		case s.events <- ev:
		default: // nobody is listening for this many: drop, as a full buffer would
		}
	}
	c, err := imapclient.DialInsecure(p.Addr("imap"), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					send(fmt.Sprintf("EXISTS %d", *d.NumMessages))
				}
			},
			Expunge: func(seq uint32) { send(fmt.Sprintf("EXPUNGE %d", seq)) },
			Fetch: func(m *imapclient.FetchMessageData) {
				buf, err := m.Collect()
				if err != nil {
					send("FETCH error " + err.Error())
					return
				}
				var flags []string
				for _, f := range buf.Flags {
					flags = append(flags, string(f))
				}
				sort.Strings(flags)
				send(strings.TrimSpace(fmt.Sprintf("FETCH %d %s", buf.SeqNum, strings.Join(flags, " "))))
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("user", "pass").Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	s.Client = c
	return s
}

// waitEvent waits for an unsolicited response equal to want, skipping
// others, and fails the test after testsupport.Timeout.
func (s *imapSession) waitEvent(want string) {
	s.t.Helper()
	timeout := time.After(testsupport.Timeout)
	var seen []string
	for {
		select {
		case ev := <-s.events:
			if ev == want {
				return
			}
			seen = append(seen, ev)
		case <-timeout:
			s.t.Fatalf("no %q (got %q)", want, seen)
		}
	}
}

// idle starts IDLE and returns a function that ends it.
func (s *imapSession) idle() (done func()) {
	s.t.Helper()
	cmd, err := s.Idle()
	if err != nil {
		s.t.Fatalf("IDLE: %v", err)
	}
	return func() {
		s.t.Helper()
		if err := cmd.Close(); err != nil {
			s.t.Fatalf("DONE: %v", err)
		}
		if err := cmd.Wait(); err != nil {
			s.t.Fatalf("IDLE: %v", err)
		}
	}
}

// go-imap v2's client: IDLE sees the EXISTS of an SMTP delivery; UID FETCH
// BODY.PEEK[] gives the file's bytes and sets no flag; STORE renames the
// file; MOVE answers COPYUID and moves the file; APPEND answers APPENDUID
// in the same UIDVALIDITY; STATUS SIZE is the sum of the files' sizes.
func TestIMAPGoClientIdleMoveAppend(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	p := start(t, "")
	c := dialIMAP(t, p)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 0 {
		t.Fatalf("SELECT INBOX: %+v, %v", sel, err)
	}
	done := c.idle()
	id := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: idle\r\n\r\nhello over IMAP\r\n")
	c.waitEvent("EXISTS 1")
	done()

	eml, err := os.ReadFile(filepath.Join(p.dir, "user", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID == 0 {
		t.Fatalf("FETCH 1 UID: %+v, %v", msgs, err)
	}
	uid := msgs[0].UID
	msgs, err = c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{UID: true, Flags: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH: %+v, %v", msgs, err)
	}
	if got := msgs[0].FindBodySection(section); string(got) != string(eml) {
		t.Fatalf("BODY.PEEK[] %q, file holds %q", got, eml)
	}
	if msgs[0].RFC822Size != int64(len(eml)) || len(msgs[0].Flags) != 0 {
		t.Fatalf("RFC822.SIZE %d (file %d), FLAGS %v", msgs[0].RFC822Size, len(eml), msgs[0].Flags)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || flagsOf(f[0]) != "" {
		t.Fatalf("BODY.PEEK[] changed the file: %v", f)
	}

	store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}
	msgs, err = c.Store(imap.UIDSetNum(uid), store, nil).Collect()
	if err != nil || len(msgs) != 1 || len(msgs[0].Flags) != 2 {
		t.Fatalf("UID STORE: %+v, %v", msgs, err)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,FS" {
		t.Fatalf("after STORE: %v", f)
	}

	moved, err := c.Move(imap.UIDSetNum(uid), "Archive").Wait()
	if err != nil || moved.UIDValidity == 0 {
		t.Fatalf("UID MOVE: %+v, %v", moved, err)
	}
	src, _ := moved.SourceUIDs.(imap.UIDSet).Nums()
	dst, _ := moved.DestUIDs.(imap.UIDSet).Nums()
	if len(src) != 1 || src[0] != uid || len(dst) != 1 || dst[0] != 1 {
		t.Fatalf("COPYUID %v → %v", src, dst)
	}
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 0 {
		t.Fatalf("INBOX after MOVE: %v", f)
	}
	if f := folderFiles(t, p.dir, "user", "Archive"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,FS" {
		t.Fatalf("Archive after MOVE: %v", f)
	}

	appended := "From: me@example.com\r\nSubject: appended\r\n\r\nkept\r\n"
	w := c.Append("Archive", int64(len(appended)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	if _, err := w.Write([]byte(appended)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ad, err := w.Wait()
	if err != nil || ad.UID != 2 || ad.UIDValidity != moved.UIDValidity {
		t.Fatalf("APPEND: %+v, %v (MOVE's UIDVALIDITY %d)", ad, err, moved.UIDValidity)
	}
	archive := folderFiles(t, p.dir, "user", "Archive")
	if len(archive) != 2 {
		t.Fatalf("Archive after APPEND: %v", archive)
	}
	var size int64
	var found bool
	for _, f := range archive {
		b := readFolderFile(t, p.dir, "user", "Archive", f)
		size += int64(len(b))
		if b == appended && flagsOf(f) == "S" {
			found = true
		}
	}
	if !found {
		t.Fatalf("appended message not in Archive with S: %v", archive)
	}

	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || st.NumMessages == nil || *st.NumMessages != 2 || st.Size == nil || *st.Size != size ||
		st.UIDNext != 3 || st.UIDValidity != moved.UIDValidity || st.NumUnseen == nil || *st.NumUnseen != 0 {
		t.Fatalf("STATUS Archive: %+v (size %v), %v; files hold %d octets", st, st.Size, err, size)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("LOGOUT: %v", err)
	}
}

// curl's IMAP: LIST of the default folders with their SPECIAL-USE
// attributes, a message fetched by UID byte for byte, a SEARCH, and an
// upload (APPEND) that lands in the folder's files.
func TestIMAPCurlFetchSearchAppend(t *testing.T) {
	requireMaildir(t, "compares with the message file on disk")
	curl := need(t, "curl")
	p := start(t, "")
	id := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: curl imap\r\n\r\nfetched by UID\r\n")
	base := "imap://" + p.Addr("imap")
	list := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/")
	for _, want := range []string{
		`* LIST (\HasNoChildren) "/" INBOX`, `* LIST (\HasNoChildren \Archive) "/" "Archive"`,
		`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`, `* LIST (\HasNoChildren \Junk) "/" "Junk"`,
		`* LIST (\HasNoChildren \Sent) "/" "Sent"`, `* LIST (\HasNoChildren \Trash) "/" "Trash"`,
	} {
		if !strings.Contains(list, want+"\r\n") {
			t.Errorf("curl LIST lacks %q:\n%s", want, list)
		}
	}
	eml, err := os.ReadFile(filepath.Join(p.dir, "user", "new", id+".eml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/INBOX;UID=1"); got != string(eml) {
		t.Fatalf("curl fetch UID 1: %q, file holds %q", got, eml)
	}
	// curl fetches BODY[]: the message is \Seen now, in its file name too.
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+id+".eml:2,S" {
		t.Fatalf("after curl's fetch: %v", f)
	}
	if got := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/INBOX?SUBJECT%20%22curl%20imap%22"); got != "* SEARCH 1\r\n" {
		t.Fatalf("curl SEARCH: %q", got)
	}

	draft := "From: me@example.com\r\nSubject: uploaded\r\n\r\nby curl -T\r\n"
	file := filepath.Join(t.TempDir(), "draft.eml")
	if err := os.WriteFile(file, []byte(draft), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, "", curl, "-sS", "-u", "user:pass", "-T", file, base+"/Drafts")
	drafts := folderFiles(t, p.dir, "user", "Drafts")
	if len(drafts) != 1 || readFolderFile(t, p.dir, "user", "Drafts", drafts[0]) != draft {
		t.Fatalf("Drafts after curl's APPEND: %v", drafts)
	}
	if got := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/Drafts;UID=1"); got != draft {
		t.Fatalf("curl fetch of the uploaded message: %q", got)
	}
	if got := runTool(t, "", curl, "-sS", "-u", "user:pass", "-X", "STATUS Drafts (MESSAGES UIDNEXT)", base+"/"); got != "* STATUS \"Drafts\" (MESSAGES 1 UIDNEXT 2)\r\n" {
		t.Fatalf("curl STATUS: %q", got)
	}
}

// mbsyncRC is an isync configuration syncing every folder of the server
// at addr with the local Maildir++ tree under local, both ways.
func mbsyncRC(t *testing.T, addr, local string) string {
	t.Helper()
	host, port := hostPort(t, addr)
	rc := filepath.Join(t.TempDir(), "mbsyncrc")
	conf := `IMAPAccount po
Host ` + host + `
Port ` + port + `
User user
Pass pass
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account po

MaildirStore local
Path ` + local + `/
Inbox ` + local + `/INBOX
SubFolders Verbatim

Channel po
Far :remote:
Near :local:
Patterns *
Sync All
Create Both
Expunge Both
SyncState *
`
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return rc
}

// localMaildir returns the file names (new/…, cur/…) of one local Maildir.
func localMaildir(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// localWith returns the one file of a local Maildir whose content holds
// s, failing the test unless there is exactly one.
func localWith(t *testing.T, dir, s string) string {
	t.Helper()
	var found []string
	for _, f := range localMaildir(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), s) {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: files holding %q: %v (all: %v)", dir, s, found, localMaildir(t, dir))
	}
	return found[0]
}

// isync's mbsync, a full two-way sync: the server's folders and messages
// come down; flags set and a message deleted locally go up (the server's
// files get the new :2, letters, the deleted one is gone); a folder
// created locally is created on the server; a later delivery and a flag
// set by another IMAP client come down on the next run.
func TestIMAPMbsyncFlagsFoldersBothWays(t *testing.T) {
	mbsync := need(t, "mbsync")
	p := start(t, "")
	smtpAddr := p.Addr("smtp")
	idA := sendRaw(t, smtpAddr, "alice@example.com", []string{"bob@example.com"}, "Subject: alpha\r\n\r\nmessage A\r\n")
	idB := sendRaw(t, smtpAddr, "alice@example.com", []string{"bob@example.com"}, "Subject: beta\r\n\r\nmessage B\r\n")
	local := filepath.Join(t.TempDir(), "mail")
	if err := os.Mkdir(local, 0o700); err != nil {
		t.Fatal(err)
	}
	rc := mbsyncRC(t, p.Addr("imap"), local)
	sync := func() { runTool(t, "", mbsync, "-c", rc, "-a") }

	sync()
	inbox := filepath.Join(local, "INBOX")
	a := localWith(t, inbox, "message A")
	b := localWith(t, inbox, "message B")
	if len(localMaildir(t, inbox)) != 2 {
		t.Fatalf("local INBOX: %v", localMaildir(t, inbox))
	}
	for _, f := range []string{"Archive", "Drafts", "Junk", "Sent", "Trash"} {
		if _, err := os.Stat(filepath.Join(local, f, "cur")); err != nil {
			t.Errorf("folder %s not created locally: %v", f, err)
		}
	}
	if got, want := readLocal(t, inbox, a), readFolderFile(t, p.dir, "user", "INBOX", "new/"+idA+".eml"); got != want {
		t.Fatalf("local copy of A %q, server's file %q", got, want)
	}

	// Locally: A read and flagged (a mail reader renames it into cur with
	// its info), B deleted, a new folder with one message.
	stem, _, _ := strings.Cut(filepath.Base(a), ":2,")
	if err := os.Rename(filepath.Join(inbox, a), filepath.Join(inbox, "cur", stem+":2,FS")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(inbox, b)); err != nil {
		t.Fatal(err)
	}
	projects := filepath.Join(local, "Projects")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(projects, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	plan := "From: me@example.com\r\nSubject: plan\r\n\r\nwritten offline\r\n"
	if err := os.WriteFile(filepath.Join(projects, "cur", "1700000000.1.local:2,S"), []byte(plan), 0o600); err != nil {
		t.Fatal(err)
	}

	sync()
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+idA+".eml:2,FS" {
		t.Fatalf("server INBOX after syncing back (want A with FS, B %s gone): %v", idB, f)
	}
	pf := folderFiles(t, p.dir, "user", "Projects")
	if len(pf) != 1 || flagsOf(pf[0]) != "S" || tuidRe.ReplaceAllString(readFolderFile(t, p.dir, "user", "Projects", pf[0]), "") != plan {
		t.Fatalf("server Projects after sync: %v", pf)
	}

	// On the server: a new delivery, and A answered by another client.
	idC := sendRaw(t, smtpAddr, "carol@example.com", []string{"bob@example.com"}, "Subject: gamma\r\n\r\nmessage C\r\n")
	s := dialIMAP(t, p)
	if _, err := s.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	s.Logout().Wait()
	sync()
	c := localWith(t, inbox, "message C")
	if got, want := readLocal(t, inbox, c), readFolderFile(t, p.dir, "user", "INBOX", "new/"+idC+".eml"); got != want {
		t.Fatalf("local copy of C %q, server's file %q", got, want)
	}
	if f := localMaildir(t, inbox); len(f) != 2 || !strings.HasSuffix(localWith(t, inbox, "message A"), ":2,FRS") {
		t.Fatalf("local INBOX after the third sync: %v", f)
	}
	// Nothing left to do: a fourth run changes nothing on either side.
	before := folderFiles(t, p.dir, "user", "INBOX")
	sync()
	if after := folderFiles(t, p.dir, "user", "INBOX"); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("an idle sync changed the server: %v → %v", before, after)
	}
}

// tuidRe matches the X-TUID field mbsync adds to each message it copies
// (its own transaction id, to find the copy again).
var tuidRe = regexp.MustCompile(`(?m)^X-TUID: [^\r\n]*\r?\n`)

// readLocal returns a message of a local Maildir mbsync wrote, in the
// server's form: mbsync stores LF line ends and adds an X-TUID field
// (its own transaction id) while a message is in flight.
func readLocal(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(tuidRe.ReplaceAllString(string(b), ""), "\n", "\r\n")
}

// offlineimap, one-shot runs (-o): the server's folders and flags come
// down; a message read locally and one deleted locally go up.
func TestIMAPOfflineimapFlagsBothWays(t *testing.T) {
	offlineimap := need(t, "offlineimap")
	p := start(t, "")
	idA := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: alpha\r\n\r\nmessage A\r\n")
	idB := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "Subject: beta\r\n\r\nmessage B\r\n")
	s := dialIMAP(t, p)
	if _, err := s.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	s.Logout().Wait()

	dir := t.TempDir()
	local := filepath.Join(dir, "mail")
	host, port := hostPort(t, p.Addr("imap"))
	rc := filepath.Join(dir, "offlineimaprc")
	conf := `[general]
accounts = po
metadata = ` + filepath.Join(dir, "meta") + `

[Account po]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = ` + local + `

[Repository remote]
type = IMAP
remotehost = ` + host + `
remoteport = ` + port + `
remoteuser = user
remotepass = pass
ssl = no
starttls = no
`
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sync := func() { runTool(t, "", offlineimap, "-c", rc, "-o", "-u", "basic") }

	sync()
	inbox := filepath.Join(local, "INBOX")
	a := localWith(t, inbox, "message A")
	b := localWith(t, inbox, "message B")
	if len(localMaildir(t, inbox)) != 2 || flagsOf(a) != "" || flagsOf(b) != "F" {
		t.Fatalf("local INBOX: %v", localMaildir(t, inbox))
	}
	if got, want := readLocal(t, inbox, b), readFolderFile(t, p.dir, "user", "INBOX", "cur/"+idB+".eml:2,F"); got != want {
		t.Fatalf("local copy of B %q, server's file %q", got, want)
	}
	for _, f := range []string{"Archive", "Drafts", "Junk", "Sent", "Trash"} {
		if _, err := os.Stat(filepath.Join(local, f, "cur")); err != nil {
			t.Errorf("folder %s not created locally: %v", f, err)
		}
	}

	stem, _, _ := strings.Cut(filepath.Base(a), ":2,")
	if err := os.Rename(filepath.Join(inbox, a), filepath.Join(inbox, "cur", stem+":2,S")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(inbox, b)); err != nil {
		t.Fatal(err)
	}
	sync()
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 1 || f[0] != "cur/"+idA+".eml:2,S" {
		t.Fatalf("server INBOX after syncing back (want A with S, B gone): %v", f)
	}
}

// tmuxScreen is a program running in a detached tmux session on a server
// of its own (a socket in a temp dir), read through capture-pane.
type tmuxScreen struct {
	t          *testing.T
	tmux, sock string
}

func startTmux(t *testing.T, home string, command string) *tmuxScreen {
	t.Helper()
	s := &tmuxScreen{t: t, tmux: need(t, "tmux"), sock: filepath.Join(t.TempDir(), "tmux.sock")}
	cmd := exec.Command(s.tmux, "-S", s.sock, "new-session", "-d", "-x", "160", "-y", "40", command)
	cmd.Env = append(os.Environ(), "HOME="+home, "TERM=xterm")
	cmd.Env = slices.DeleteFunc(cmd.Env, func(e string) bool { return strings.HasPrefix(e, "TMUX=") })
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command(s.tmux, "-S", s.sock, "kill-server").Run() })
	return s
}

// screen returns what the pane shows now ("" once the program has ended).
func (s *tmuxScreen) screen() string {
	out, _ := exec.Command(s.tmux, "-S", s.sock, "capture-pane", "-p").Output()
	return string(out)
}

// keys sends tmux key names ("Enter", "q", "$").
func (s *tmuxScreen) keys(keys ...string) {
	s.t.Helper()
	args := append([]string{"-S", s.sock, "send-keys"}, keys...)
	if out, err := exec.Command(s.tmux, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("tmux send-keys %v: %v\n%s", keys, err, out)
	}
}

// waitScreen waits until the screen matches re.
func (s *tmuxScreen) waitScreen(re string) {
	s.t.Helper()
	r := regexp.MustCompile(re)
	if !testsupport.WaitUntil(testsupport.Timeout, func() bool { return r.MatchString(s.screen()) }) {
		s.t.Fatalf("screen never matched %q:\n%s", re, s.screen())
	}
}

// neomutt in a terminal (tmux) on imap://: the index lists INBOX, a
// message opened in the pager is marked \Seen in the server's file, one
// deleted and synced ($) is expunged from the server, and a delivery while
// neomutt is open shows up in its index.
func TestNeomuttOverIMAP(t *testing.T) {
	neomutt := need(t, "neomutt")
	need(t, "tmux")
	p := start(t, "")
	idA := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "From: alice@example.com\r\nSubject: alpha\r\n\r\nmessage alpha\r\n")
	idB := sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"bob@example.com"}, "From: alice@example.com\r\nSubject: beta\r\n\r\nmessage beta\r\n")
	home := t.TempDir()
	rc := filepath.Join(home, "neomuttrc")
	conf := `set folder = "imap://` + p.Addr("imap") + `/"
set spoolfile = "+INBOX"
set imap_user = "user"
set imap_pass = "pass"
set ssl_starttls = no
set ssl_force_tls = no
set header_cache = ""
set message_cachedir = ""
set mail_check = 1
set timeout = 1
set delete = yes
set quit = yes
set move = no
set sort = date-sent
set wait_key = no
`
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startTmux(t, home, neomutt+" -n -F "+rc)
	s.waitScreen(`(?m)^ +1 N .* alpha\n +2 N .* beta\n`)

	s.keys("Enter") // open alpha
	s.waitScreen(`(?m)^message alpha$`)
	s.keys("q", "$") // back to the index, sync the mailbox
	testsupport.WaitFor(t, "alpha \\Seen on the server", func() bool {
		f := folderFiles(t, p.dir, "user", "INBOX")
		return slices.Contains(f, "cur/"+idA+".eml:2,S")
	})

	s.keys("j", "d", "$") // beta: delete, sync (expunges: delete=yes)
	testsupport.WaitFor(t, "beta expunged on the server", func() bool {
		f := folderFiles(t, p.dir, "user", "INBOX")
		return len(f) == 1 && f[0] == "cur/"+idA+".eml:2,S"
	})
	if !testsupport.WaitUntil(testsupport.Timeout, func() bool {
		sc := s.screen()
		return strings.Contains(sc, "Msgs:1 ") && !strings.Contains(sc, "beta")
	}) {
		t.Fatalf("beta (%s) still in the index:\n%s", idB, s.screen())
	}

	sendRaw(t, p.Addr("smtp"), "carol@example.com", []string{"bob@example.com"}, "From: carol@example.com\r\nSubject: gamma\r\n\r\nmessage gamma\r\n")
	s.waitScreen(`(?m)^ +2 N .* gamma\n`)
	s.keys("q")
	testsupport.WaitFor(t, "neomutt to quit", func() bool { return s.screen() == "" })
	if f := folderFiles(t, p.dir, "user", "INBOX"); len(f) != 2 {
		t.Fatalf("server INBOX after neomutt quit: %v", f)
	}
}
