package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// Real IMAP clients against the real binary: Python's imaplib, curl
// imap://, isync's mbsync (a two-way sync with flags) and go-imap v2's own
// client (IDLE, MOVE, APPEND). .ci/run installs the Debian packages.

func TestPythonImaplib(t *testing.T) {
	py := need(t, "python3")
	p := start(t, "")
	sendRaw(t, p.Addr("smtp"), "alice@example.com", []string{"user@example.com"}, "From: alice@example.com\r\nSubject: from smtp\r\n\r\nhello imaplib\r\n")
	h, port := hostPort(t, p.Addr("imap"))
	script := `
import imaplib, sys, time
M = imaplib.IMAP4(sys.argv[1], int(sys.argv[2]))
assert "IMAP4REV1" in M.capabilities and "IDLE" not in M.capabilities, M.capabilities
M.login("user", "pass")
typ, folders = M.list()
names = [f.decode().split(' "/" ')[-1].strip('"') for f in folders]
for want in ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]:
    assert want in names, names
typ, data = M.select("INBOX"); assert data == [b"1"], data
typ, data = M.uid("FETCH", "1", "(FLAGS RFC822)")
assert b"hello imaplib" in data[0][1], data
assert b"\\Seen" in data[0][0] or b"\\Seen" in data[1], data
typ, data = M.search(None, "SUBJECT", '"from smtp"'); assert data == [b"1"], data
M.append("Drafts", "(\\Draft)", imaplib.Time2Internaldate(time.time()), b"Subject: draft\r\n\r\nwip\r\n")
typ, data = M.uid("COPY", "1", "Archive"); assert typ == "OK", data
typ, data = M.uid("MOVE", "1", "Trash"); assert typ == "OK", data
typ, data = M.status("Trash", "(MESSAGES UNSEEN)"); assert b"MESSAGES 1 UNSEEN 0" in data[0], data
typ, data = M.status("Drafts", "(MESSAGES)"); assert b"MESSAGES 1" in data[0], data
M.select("Archive")
M.store("1", "+FLAGS", "\\Deleted")
typ, data = M.expunge(); assert data == [b"1"], data
M.close(); M.logout()
print("ok")
`
	if out := runTool(t, "", py, "-c", script, h, port); strings.TrimSpace(out) != "ok" {
		t.Fatal(out)
	}
	if n := len(mailFiles(t, p.dir, "user")); n != 0 {
		t.Fatalf("INBOX still has %d files after MOVE", n)
	}
	trash, _ := filepath.Glob(filepath.Join(p.dir, "user", ".Trash", "cur", "*:2,S"))
	if len(trash) != 1 {
		t.Fatalf("Trash: %v", trash)
	}
}

func TestCurlIMAP(t *testing.T) {
	curl := need(t, "curl")
	p := start(t, "")
	body := "From: a@example.com\r\nSubject: for curl\r\n\r\ncurl body\r\n"
	sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"user@example.com"}, body)
	base := "imap://" + p.Addr("imap")
	list := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/")
	if !strings.Contains(list, `"/" INBOX`) || !strings.Contains(list, `"Archive"`) {
		t.Fatalf("curl LIST: %q", list)
	}
	msg := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/INBOX;UID=1")
	if !strings.HasSuffix(msg, body) {
		t.Fatalf("curl UID=1: %q", msg)
	}
	up := filepath.Join(t.TempDir(), "up.eml")
	os.WriteFile(up, []byte("Subject: uploaded\r\n\r\nby curl\r\n"), 0o600)
	runTool(t, "", curl, "-sS", "-u", "user:pass", "-T", up, base+"/Sent")
	out := runTool(t, "", curl, "-sS", "-u", "user:pass", base+"/Sent", "-X", "SEARCH SUBJECT uploaded")
	if !strings.Contains(out, "SEARCH 1") {
		t.Fatalf("curl SEARCH in Sent: %q", out)
	}
}

// TestMbsyncTwoWay: a full two-way sync with isync's mbsync: the server's
// folders and messages reach a local Maildir, local flag changes, a local
// deletion and a local new message reach the server, and a later delivery
// reaches the local side.
func TestMbsyncTwoWay(t *testing.T) {
	mbsync := need(t, "mbsync")
	p := start(t, "")
	for i := 1; i <= 3; i++ {
		sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"user@example.com"}, fmt.Sprintf("Subject: m%d\r\n\r\nbody %d\r\n", i, i))
	}
	local := filepath.Join(t.TempDir(), "local") + "/"
	os.MkdirAll(local, 0o700)
	h, port := hostPort(t, p.Addr("imap"))
	rc := filepath.Join(t.TempDir(), "mbsyncrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`IMAPAccount po
Host %s
Port %s
User user
Pass pass
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account po

MaildirStore near
Path %s
Inbox %sINBOX
SubFolders Verbatim

Channel po
Far :remote:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
Sync All
`, h, port, local, local)), 0o600)
	sync := func() { runTool(t, "", mbsync, "-q", "-c", rc, "-a") }
	sync()
	got, _ := filepath.Glob(local + "INBOX/*/*")
	if len(got) != 3 {
		t.Fatalf("local INBOX after the first sync: %v", got)
	}
	for _, f := range []string{"Archive", "Drafts", "Junk", "Sent", "Trash"} {
		if _, err := os.Stat(local + f); err != nil {
			t.Errorf("folder %s not synced: %v", f, err)
		}
	}
	// Locally: flag the first seen+flagged, delete the second, write a
	// new message into Archive. mbsync needs a second between changes of
	// a Maildir directory and its next look (it sleeps otherwise).
	time.Sleep(1100 * time.Millisecond)
	var first, second string
	for _, f := range got {
		b, _ := os.ReadFile(f)
		switch {
		case strings.Contains(string(b), "Subject: m1"):
			first = f
		case strings.Contains(string(b), "Subject: m2"):
			second = f
		}
	}
	base := filepath.Base(first)
	if i := strings.Index(base, ":2,"); i >= 0 {
		base = base[:i]
	}
	os.Rename(first, local+"INBOX/cur/"+base+":2,FS")
	os.Remove(second)
	os.WriteFile(local+"Archive/new/1733600000.local.x", []byte("Subject: made locally\n\nlocal\n"), 0o600)
	time.Sleep(1100 * time.Millisecond)
	sync()
	inbox := mailFiles(t, p.dir, "user")
	if len(inbox) != 2 {
		t.Fatalf("server INBOX after the sync back: %v", inbox)
	}
	flagged := 0
	for _, f := range inbox {
		if strings.HasSuffix(f, ":2,FS") {
			flagged++
		}
	}
	if flagged != 1 {
		t.Fatalf("server INBOX flags: %v", inbox)
	}
	archive, _ := filepath.Glob(filepath.Join(p.dir, "user", ".Archive", "*", "*"))
	if len(archive) != 1 {
		t.Fatalf("server Archive: %v", archive)
	}
	// mbsync adds its X-TUID field to what it uploads; the rest arrives
	// with CRLF line ends.
	if b, _ := os.ReadFile(archive[0]); !strings.HasPrefix(string(b), "Subject: made locally\r\n") || !strings.HasSuffix(string(b), "\r\n\r\nlocal\r\n") {
		t.Fatalf("server Archive message %q", b)
	}
	sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"user@example.com"}, "Subject: m4\r\n\r\nlater\r\n")
	sync()
	got, _ = filepath.Glob(local + "INBOX/*/*")
	if len(got) != 3 {
		t.Fatalf("local INBOX after the later delivery: %v", got)
	}
}

// TestGoIMAPClient: go-imap v2's client: IDLE hears an SMTP delivery,
// UID FETCH BODY.PEEK[], STORE, MOVE with COPYUID, APPEND with APPENDUID,
// STATUS with SIZE.
func TestGoIMAPClient(t *testing.T) {
	p := start(t, "")
	updates := make(chan uint32, 8)
	c, err := imapclient.DialInsecure(p.Addr("imap"), &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					updates <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("user", "pass").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: idle\r\n\r\narrived\r\n"
	sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"user@example.com"}, body)
	select {
	case n := <-updates:
		if n != 1 {
			t.Fatalf("EXISTS %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}, Flags: true}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v %v", msgs, err)
	}
	if got := string(msgs[0].FindBodySection(section)); !strings.HasSuffix(got, body) || len(msgs[0].Flags) != 0 {
		t.Fatalf("BODY.PEEK[] %q flags %v", got, msgs[0].Flags)
	}
	if _, err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}, Silent: true}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	moved, err := c.Move(imap.UIDSetNum(1), "Archive").Wait()
	if err != nil || moved.UIDValidity == 0 || moved.DestUIDs.String() != "1" {
		t.Fatalf("MOVE: %+v %v", moved, err)
	}
	draft := "Subject: draft\r\n\r\nwip\r\n"
	app := c.Append("Drafts", int64(len(draft)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagDraft}})
	app.Write([]byte(draft))
	app.Close()
	appended, err := app.Wait()
	if err != nil || appended.UID != 1 {
		t.Fatalf("APPEND: %+v %v", appended, err)
	}
	st, err := c.Status("Archive", &imap.StatusOptions{NumMessages: true, Size: true, UIDNext: true}).Wait()
	if err != nil || *st.NumMessages != 1 || *st.Size == 0 || st.UIDNext != 2 {
		t.Fatalf("STATUS: %+v %v", st, err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(p.dir, "user", ".Archive", "cur", "*:2,F")); len(files) != 1 {
		t.Fatalf("Archive files: %v", files)
	}
}

// TestOfflineimap: offlineimap's one-shot sync brings every folder and
// message down, then a local read mark and a local deletion go up.
func TestOfflineimap(t *testing.T) {
	oi := need(t, "offlineimap")
	p := start(t, "")
	for i := 1; i <= 2; i++ {
		sendRaw(t, p.Addr("smtp"), "a@example.com", []string{"user@example.com"}, fmt.Sprintf("Subject: o%d\r\n\r\nbody %d\r\n", i, i))
	}
	dir := t.TempDir()
	h, port := hostPort(t, p.Addr("imap"))
	rc := filepath.Join(dir, "rc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`[general]
accounts = po
metadata = %s/meta
[Account po]
localrepository = local
remoterepository = remote
[Repository local]
type = Maildir
localfolders = %s/mail
[Repository remote]
type = IMAP
remotehost = %s
remoteport = %s
remoteuser = user
remotepass = pass
ssl = no
starttls = no
`, dir, dir, h, port)), 0o600)
	sync := func() { runTool(t, "", oi, "-c", rc, "-o", "-u", "basic") }
	sync()
	got, _ := filepath.Glob(filepath.Join(dir, "mail", "INBOX", "new", "*"))
	if len(got) != 2 {
		t.Fatalf("local INBOX: %v", got)
	}
	for _, f := range []string{"Archive", "Drafts", "Junk", "Sent", "Trash"} {
		if _, err := os.Stat(filepath.Join(dir, "mail", f)); err != nil {
			t.Errorf("folder %s not synced: %v", f, err)
		}
	}
	os.Rename(got[0], filepath.Join(dir, "mail", "INBOX", "cur", filepath.Base(got[0])+"S"))
	os.Remove(got[1])
	sync()
	inbox := mailFiles(t, p.dir, "user")
	if len(inbox) != 1 || !strings.HasSuffix(inbox[0], ":2,S") {
		t.Fatalf("server INBOX after the sync back: %v", inbox)
	}
}
