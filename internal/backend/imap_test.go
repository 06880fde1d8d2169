package backend

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"postoffice/internal/auth"
	"postoffice/internal/imap"
	"postoffice/internal/store"
	"postoffice/internal/store/maildir"
	"postoffice/internal/testsupport"
)

// imapCounter counts nothing.
type imapCounter struct{}

func (imapCounter) IMAPLogin(string)                        {}
func (imapCounter) StoreError(string)                       {}
func (imapCounter) AuthFailure(string, time.Duration, bool) {}

// imapFixture is an IMAP server on this backend over a Maildir in a temp
// directory, with the one user "user"/"pass".
type imapFixture struct {
	root string
	md   *maildir.Maildir
	addr string
}

func newIMAPFixture(t testing.TB) *imapFixture {
	return newIMAPFixtureLog(t, slog.New(slog.DiscardHandler))
}

func newIMAPFixtureLog(t testing.TB, log *slog.Logger) *imapFixture {
	t.Helper()
	root := t.TempDir()
	md, err := maildir.New(root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { md.Close() })
	users := auth.SingleUser("user", "pass")
	thr := auth.NewThrottle(auth.ThrottleConfig{BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	srv := &imap.Server{
		Backend: &IMAP{
			Auth:        &Authn{Users: func() *auth.Users { return users }, Throttle: thr, Counter: imapCounter{}, Proto: "imap"},
			Folders:     md,
			Counter:     imapCounter{},
			AppendLimit: 1 << 20,
		},
		Logger: log,
	}
	return &imapFixture{root: root, md: md, addr: testsupport.Serve(t, srv, imap.ErrServerClosed)}
}

// login dials and logs in as user.
func (f *imapFixture) login(t testing.TB) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, f.addr)
	c.IMAPLogin("user", "pass")
	return c
}

// deliver stores a message in INBOX as SMTP would, and returns its id.
func (f *imapFixture) deliver(t testing.TB, subject, body string) string {
	t.Helper()
	id := f.md.NewID()
	msg := fmt.Sprintf("From: a@example.com\r\nTo: user@example.com\r\nSubject: %s\r\nDate: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <%s@test>\r\n\r\n%s\r\n", subject, id, body)
	if err := f.md.Deliver(context.Background(), id, []string{"user"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	return id
}

// files lists the message files of a folder directory ("" = INBOX).
func (f *imapFixture) files(t *testing.T, folder string) []string {
	t.Helper()
	dir := filepath.Join(f.root, "user")
	if folder != "" {
		dir = filepath.Join(dir, "."+folder)
	}
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			out = append(out, sub+"/"+e.Name())
		}
	}
	return out
}

// TestIMAPNotAuthenticatedState: what a client may and may not do before
// login (RFC 9051 §6.1, §6.2).
func TestIMAPNotAuthenticatedState(t *testing.T) {
	f := newIMAPFixture(t)
	c := testsupport.Dial(t, f.addr)
	c.Expect("* OK [CAPABILITY *IMAP4rev2*] *")
	c.IMAP("NOOP", "OK *")
	c.IMAP("CAPABILITY", "OK *")
	c.IMAP("SELECT INBOX", "BAD *")
	c.IMAP("LOGIN user wrong", "NO [AUTHENTICATIONFAILED] *")
	c.IMAP("AUTHENTICATE PLAIN "+b64("\x00user\x00wrong"), "NO *")
	c.IMAP("AUTHENTICATE PLAIN "+b64("other\x00user\x00pass"), "NO *")
	c.IMAP("AUTHENTICATE PLAIN "+b64("\x00user\x00pass"), "OK *")
	c.IMAP("LOGIN user pass", "BAD *")
	c.IMAP("LOGOUT", "OK *")

	// LOGIN with a literal and a quoted string; the user name's case
	// does not matter (as for POP3).
	c = testsupport.Dial(t, f.addr)
	c.Expect("* OK *")
	c.Send("a LOGIN {4}\r\n")
	c.Expect("+ *")
	c.Send("USER \"pass\"\r\n")
	c.Expect("a OK *")
}

// TestIMAPFoldersFirstLogin: INBOX and the default folders with their
// special-use attributes exist from the first login, on disk as Maildir++
// (RFC 6154, RFC 5258, RFC 3348).
func TestIMAPFoldersFirstLogin(t *testing.T) {
	f := newIMAPFixture(t)
	c := f.login(t)
	r := c.IMAP(`LIST "" "*"`, "OK *")
	for _, want := range []string{
		`* LIST (\HasNoChildren) "/" INBOX`,
		`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
		`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
		`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
		`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
		`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
	} {
		if !r.Has(want) {
			t.Errorf("LIST lacks %q: %q", want, r.Untagged)
		}
	}
	for _, d := range []string{".Archive", ".Drafts", ".Junk", ".Sent", ".Trash"} {
		for _, sub := range []string{"cur", "new", "tmp"} {
			if st, err := os.Stat(filepath.Join(f.root, "user", d, sub)); err != nil || !st.IsDir() {
				t.Errorf("%s/%s: %v", d, sub, err)
			}
		}
	}
	r = c.IMAP(`LIST (SPECIAL-USE) "" "*"`, "OK *")
	if len(r.Untagged) != 5 || r.Has(`* LIST * INBOX`) {
		t.Errorf("LIST (SPECIAL-USE): %q", r.Untagged)
	}
	c.IMAP(`LIST "" ""`, `OK *`)
	r = c.IMAP(`LSUB "" "*"`, "OK *")
	if !r.Has(`* LSUB * "/" "Sent"`) {
		t.Errorf("LSUB: default folders subscribed: %q", r.Untagged)
	}
	r = c.IMAP(`NAMESPACE`, "OK *")
	if !r.Has(`* NAMESPACE (("" "/")) NIL NIL`) {
		t.Errorf("NAMESPACE %q", r.Untagged)
	}
}

// TestIMAPFolderCommands: CREATE, LIST with children, RENAME, SUBSCRIBE,
// STATUS and DELETE of user folders, names in UTF-8 on the wire and
// modified UTF-7 on disk.
func TestIMAPFolderCommands(t *testing.T) {
	f := newIMAPFixture(t)
	c := f.login(t)
	c.IMAP(`CREATE Projects/2026`, "OK *")
	c.IMAP(`CREATE Projects`, "NO [ALREADYEXISTS] *")
	c.IMAP(`CREATE "Bücher"`, "OK *")
	if _, err := os.Stat(filepath.Join(f.root, "user", ".B&APw-cher", "cur")); err != nil {
		t.Errorf("modified UTF-7 folder on disk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "user", ".Projects.2026", "new")); err != nil {
		t.Errorf("Maildir++ child on disk: %v", err)
	}
	c.IMAP(`ENABLE UTF8=ACCEPT`, "OK *")
	r := c.IMAP(`LIST "" "*"`, "OK *")
	if !r.Has(`* LIST (\HasChildren) "/" "Projects"`) || !r.Has(`* LIST (\HasNoChildren) "/" "Projects/2026"`) || !r.Has(`* LIST (\HasNoChildren) "/" "Bücher"`) {
		t.Errorf("LIST: %q", r.Untagged)
	}
	r = c.IMAP(`LIST "" "Projects/%"`, "OK *")
	if len(r.Untagged) != 1 || !r.Has(`* LIST * "/" "Projects/2026"`) {
		t.Errorf("LIST Projects/%%: %q", r.Untagged)
	}
	c.IMAP(`DELETE Projects`, "NO [HASCHILDREN] *")
	c.IMAP(`RENAME Projects Work`, "OK *")
	r = c.IMAP(`LIST "" "Work*"`, "OK *")
	if !r.Has(`* LIST * "/" "Work"`) || !r.Has(`* LIST * "/" "Work/2026"`) {
		t.Errorf("after RENAME: %q", r.Untagged)
	}
	c.IMAP(`SUBSCRIBE Work/2026`, "OK *")
	r = c.IMAP(`LIST (SUBSCRIBED) "" "Work*"`, "OK *")
	if len(r.Untagged) != 1 || !r.Has(`* LIST (*\Subscribed*) "/" "Work/2026"`) {
		t.Errorf("LIST (SUBSCRIBED): %q", r.Untagged)
	}
	c.IMAP(`UNSUBSCRIBE Work/2026`, "OK *")
	r = c.IMAP(`STATUS Work/2026 (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)`, "OK *")
	if !r.Has(`* STATUS "Work/2026" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY * UNSEEN 0 SIZE 0)`) {
		t.Errorf("STATUS: %q", r.Untagged)
	}
	c.IMAP(`DELETE Work/2026`, "OK *")
	c.IMAP(`DELETE Work/2026`, "NO *")
	c.IMAP(`DELETE INBOX`, "NO *")
	c.IMAP(`CREATE a.b`, "NO [CANNOT] *")
	c.IMAP(`SELECT Nope`, "NO *")
	c.IMAP(`STATUS Nope (MESSAGES)`, "NO *")
}

// TestIMAPSelectedState: SELECT, FETCH of every kind, STORE, SEARCH,
// EXPUNGE, COPY and MOVE with their UIDPLUS codes, over messages SMTP
// delivered.
func TestIMAPSelectedState(t *testing.T) {
	f := newIMAPFixture(t)
	id1 := f.deliver(t, "first", "hello one")
	f.deliver(t, "second", "hello two")
	f.deliver(t, "third", "Grüße drei")
	c := f.login(t)
	r := c.IMAP("SELECT INBOX", "OK [READ-WRITE] *")
	for _, want := range []string{"* 3 EXISTS", "* OK [UIDVALIDITY *] *", "* OK [UIDNEXT 4] *",
		`* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`, `* OK [PERMANENTFLAGS (\Answered \Flagged \Deleted \Seen \Draft \*)] *`} {
		if !r.Has(want) {
			t.Errorf("SELECT lacks %q: %q", want, r.Untagged)
		}
	}
	r = c.IMAP("FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)", "OK *")
	if len(r.Untagged) != 3 || !r.Has(`* 1 FETCH (UID 1 FLAGS () RFC822.SIZE * ENVELOPE ("Mon, 07 Dec 2026 10:00:00 +0000" "first" *`) {
		t.Fatalf("FETCH: %q", r.Untagged)
	}
	// BODY.PEEK leaves \Seen alone; BODY[] sets it and says so.
	r = c.IMAP("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK *")
	if !r.Has("* 1 FETCH (UID 1 BODY[HEADER.FIELDS (\"SUBJECT\")] {*}\r\nSubject: first\r\n\r\n)") {
		t.Fatalf("BODY.PEEK[HEADER.FIELDS]: %q", r.Untagged)
	}
	r = c.IMAP("FETCH 1 (FLAGS)", "OK *")
	if !r.Has(`* 1 FETCH (UID 1 FLAGS ())`) {
		t.Fatalf("after PEEK: %q", r.Untagged)
	}
	r = c.IMAP("FETCH 1 (BODY[TEXT])", "OK *")
	if !r.Has("* 1 FETCH (UID 1 FLAGS (\\Seen) BODY[TEXT] {11}\r\nhello one\r\n)") {
		t.Fatalf("BODY[TEXT]: %q", r.Untagged)
	}
	if got := f.files(t, ""); !contains(got, "cur/"+id1+".eml:2,S") {
		t.Fatalf("\\Seen not in the file name: %q", got)
	}
	r = c.IMAP("UID FETCH 2 (BODY.PEEK[]<0.4>)", "OK *")
	if !r.Has("* 2 FETCH (UID 2 BODY[]<0> {4}\r\nFrom)") {
		t.Fatalf("partial: %q", r.Untagged)
	}
	r = c.IMAP("FETCH 3 (BODYSTRUCTURE INTERNALDATE)", "OK *")
	if !r.Has(`* 3 FETCH (UID 3 INTERNALDATE "*" BODYSTRUCTURE ("text" "plain" *`) && !r.Has(`* 3 FETCH (UID 3 BODYSTRUCTURE * INTERNALDATE *`) {
		t.Fatalf("BODYSTRUCTURE: %q", r.Untagged)
	}
	// STORE with and without .SILENT; keywords.
	r = c.IMAP(`STORE 2 +FLAGS (\Flagged $Important)`, "OK *")
	if !r.Has(`* 2 FETCH (UID 2 FLAGS (\Flagged $Important))`) {
		t.Fatalf("STORE: %q", r.Untagged)
	}
	r = c.IMAP(`UID STORE 2 -FLAGS.SILENT (\Flagged)`, "OK *")
	if r.Has(`* 2 FETCH (UID 2 FLAGS *`) {
		t.Fatalf("STORE .SILENT answered FLAGS: %q", r.Untagged)
	}
	// SEARCH, plain and ESEARCH.
	r = c.IMAP(`SEARCH UNSEEN`, "OK *")
	if !r.Has(`* SEARCH 2 3`) {
		t.Fatalf("SEARCH UNSEEN: %q", r.Untagged)
	}
	r = c.IMAP(`UID SEARCH SUBJECT second`, "OK *")
	if !r.Has(`* SEARCH 2`) {
		t.Fatalf("SEARCH SUBJECT: %q", r.Untagged)
	}
	r = c.IMAP(`SEARCH BODY "grüße"`, "OK *")
	if !r.Has(`* SEARCH 3`) {
		t.Fatalf("SEARCH BODY: %q", r.Untagged)
	}
	r = c.IMAP(`SEARCH RETURN (MIN MAX COUNT) KEYWORD $Important`, "OK *")
	if !r.Has(`* ESEARCH (TAG "*") MIN 2 MAX 2 COUNT 1`) {
		t.Fatalf("ESEARCH: %q", r.Untagged)
	}
	r = c.IMAP(`SEARCH OR SEEN LARGER 100000`, "OK *")
	if !r.Has(`* SEARCH 1`) {
		t.Fatalf("SEARCH OR: %q", r.Untagged)
	}
	// COPY and MOVE answer COPYUID (RFC 4315 §3).
	r = c.IMAP(`COPY 1:2 Archive`, "OK [COPYUID * 1:2 1:2] *")
	c.IMAP(`COPY 1 Nope`, "NO [TRYCREATE] *")
	r = c.IMAP(`UID MOVE 3 Archive`, "OK *")
	if !r.Has(`* OK [COPYUID * 3 3] *`) || !r.Has(`* 3 EXPUNGE`) {
		t.Fatalf("MOVE: %q", r.Untagged)
	}
	if got := f.files(t, "Archive"); len(got) != 3 {
		t.Fatalf("Archive files %q", got)
	}
	// EXPUNGE removes only \Deleted.
	c.IMAP(`STORE 1 +FLAGS.SILENT (\Deleted)`, "OK *")
	r = c.IMAP(`EXPUNGE`, "OK *")
	if len(r.Untagged) != 1 || !r.Has(`* 1 EXPUNGE`) {
		t.Fatalf("EXPUNGE: %q", r.Untagged)
	}
	if got := f.files(t, ""); len(got) != 1 {
		t.Fatalf("INBOX files after EXPUNGE %q", got)
	}
	// UID EXPUNGE of a message without \Deleted removes nothing.
	r = c.IMAP(`UID EXPUNGE 2`, "OK *")
	if len(r.Untagged) != 0 {
		t.Fatalf("UID EXPUNGE of an undeleted message: %q", r.Untagged)
	}
	c.IMAP(`UNSELECT`, "OK *")
	c.IMAP(`FETCH 1 FLAGS`, "BAD *")
}

// TestIMAPAppend: APPEND with flags and date answers APPENDUID (RFC 4315)
// once the message is on disk with CRLF line ends; a missing folder gets
// TRYCREATE; EXAMINE is read-only.
func TestIMAPAppend(t *testing.T) {
	f := newIMAPFixture(t)
	c := f.login(t)
	msg := "Subject: drafted\nFrom: me@example.com\n\nbody line\n"
	c.Send(fmt.Sprintf("a APPEND Drafts (\\Draft \\Seen) \"07-Dec-2026 10:00:00 +0000\" {%d}\r\n", len(msg)))
	c.Expect("+ *")
	c.Send(msg + "\r\n")
	c.Expect("a OK [APPENDUID * 1] *")
	files := f.files(t, "Drafts")
	if len(files) != 1 || !strings.HasSuffix(files[0], ":2,DS") {
		t.Fatalf("Drafts files %q", files)
	}
	b, err := os.ReadFile(filepath.Join(f.root, "user", ".Drafts", files[0]))
	if err != nil || string(b) != strings.ReplaceAll(msg, "\n", "\r\n") {
		t.Fatalf("stored %q, %v", b, err)
	}
	c.Send("b APPEND Nope {1+}\r\nx\r\n")
	c.Expect("b NO [TRYCREATE] *")
	r := c.IMAP("EXAMINE Drafts", "OK [READ-ONLY] *")
	if !r.Has("* 1 EXISTS") {
		t.Fatalf("EXAMINE: %q", r.Untagged)
	}
	c.IMAP(`STORE 1 +FLAGS (\Flagged)`, "NO *")
	c.IMAP(`EXPUNGE`, "NO *")
	r = c.IMAP(`FETCH 1 (BODY[] FLAGS)`, "OK *")
	if !r.Has(`* 1 FETCH (UID 1 FLAGS (\Draft \Seen) BODY[] {*}*`) {
		t.Fatalf("FETCH in EXAMINE: %q", r.Untagged)
	}
	r = c.IMAP(`FETCH 1 (INTERNALDATE)`, "OK *")
	if !r.Has(`* 1 FETCH (UID 1 INTERNALDATE " 7-Dec-2026 10:00:00 +0000")`) {
		t.Fatalf("INTERNALDATE of the APPEND date: %q", r.Untagged)
	}
}

// TestIMAPIdleSeesOtherChanges: a session in IDLE hears of a delivery
// (EXISTS), a flag change by another session (FETCH FLAGS) and an expunge
// by another session (EXPUNGE), without reconnecting (RFC 2177).
func TestIMAPIdleSeesOtherChanges(t *testing.T) {
	f := newIMAPFixture(t)
	f.deliver(t, "one", "1")
	idler := f.login(t)
	idler.IMAP("SELECT INBOX", "OK *")
	idler.Send("i IDLE\r\n")
	idler.Expect("+ *")

	f.deliver(t, "two", "2")
	idler.Expect("* 2 EXISTS")

	other := f.login(t)
	other.IMAP("SELECT INBOX", "OK *")
	other.IMAP(`STORE 1 +FLAGS (\Seen)`, "OK *")
	idler.Expect(`* 1 FETCH (UID 1 FLAGS (\Seen))`)
	other.IMAP(`STORE 2 +FLAGS.SILENT (\Deleted)`, "OK *")
	idler.Expect(`* 2 FETCH (UID 2 FLAGS (\Deleted))`)
	other.IMAP(`EXPUNGE`, "OK *")
	idler.Expect(`* 2 EXPUNGE`)
	idler.Send("DONE\r\n")
	idler.Expect("i OK *")
}

// TestIMAPSeesExternalChanges: a file another program puts into new/, and
// one it removes, are reported at the next command.
func TestIMAPSeesExternalChanges(t *testing.T) {
	f := newIMAPFixture(t)
	f.deliver(t, "one", "1")
	c := f.login(t)
	c.IMAP("SELECT INBOX", "OK *")
	ext := filepath.Join(f.root, "user", "new", "1733600000.M1P1.elsewhere")
	if err := os.WriteFile(ext, []byte("Subject: external\n\nfrom mutt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := c.IMAP("NOOP", "OK *")
	if !r.Has("* 2 EXISTS") {
		t.Fatalf("NOOP after an external delivery: %q", r.Untagged)
	}
	r = c.IMAP("FETCH 2 (RFC822.SIZE BODY.PEEK[])", "OK *")
	want := "Subject: external\r\n\r\nfrom mutt\r\n"
	if !r.Has(fmt.Sprintf("* 2 FETCH (UID 2 RFC822.SIZE %d BODY[] {%d}\r\n%s)", len(want), len(want), want)) {
		t.Fatalf("FETCH of the external file: %q", r.Untagged)
	}
	if err := os.Remove(ext); err != nil {
		t.Fatal(err)
	}
	// Not during FETCH (RFC 9051 §7.4.1) ...
	r = c.IMAP("FETCH 1 FLAGS", "OK *")
	if r.Has("* 2 EXPUNGE") {
		t.Fatalf("EXPUNGE during FETCH: %q", r.Untagged)
	}
	// ... but at NOOP.
	r = c.IMAP("NOOP", "OK *")
	if !r.Has("* 2 EXPUNGE") {
		t.Fatalf("NOOP after an external removal: %q", r.Untagged)
	}
}

// TestIMAPUIDsSurviveRestart: UIDs and UIDVALIDITY are the same for a new
// server over the same Maildir, and a message moved keeps its id.
func TestIMAPUIDsSurviveRestart(t *testing.T) {
	f := newIMAPFixture(t)
	for i := 0; i < 3; i++ {
		f.deliver(t, fmt.Sprint("m", i), "x")
	}
	c := f.login(t)
	r := c.IMAP("SELECT INBOX", "OK *")
	validity := grep(r.Untagged, "* OK [UIDVALIDITY *")
	c.IMAP(`STORE 2 +FLAGS.SILENT (\Deleted)`, "OK *")
	c.IMAP(`EXPUNGE`, "OK *")
	c.IMAP("LOGOUT", "OK *")

	md2, err := maildir.New(f.root, maildir.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer md2.Close()
	folder, err := md2.OpenFolder("user", store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer folder.Close()
	st, err := folder.Sync()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Messages) != 2 || st.Messages[0].UID != 1 || st.Messages[1].UID != 3 || st.UIDNext != 4 {
		t.Fatalf("after restart: %+v", st)
	}
	if fmt.Sprintf("* OK [UIDVALIDITY %d] UIDs valid", st.UIDValidity) != validity && !strings.Contains(validity, fmt.Sprint(st.UIDValidity)) {
		t.Fatalf("UIDVALIDITY %d, was %q", st.UIDValidity, validity)
	}
}

func grep(lines []string, pattern string) string {
	for _, l := range lines {
		if testsupport.Glob(pattern, l) {
			return l
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestIMAPSearchResAndClose: SEARCH RETURN (SAVE) then FETCH $ (RFC 5182);
// CLOSE expunges \Deleted silently, UNSELECT does not (RFC 9051 §6.4.1,
// §6.4.2); after ENABLE IMAP4rev2 there is no RECENT (RFC 9051 §7.4.1).
func TestIMAPSearchResAndClose(t *testing.T) {
	f := newIMAPFixture(t)
	for _, s := range []string{"alpha", "beta", "alpha two"} {
		f.deliver(t, s, "x")
	}
	c := f.login(t)
	c.IMAP("ENABLE IMAP4rev2", "OK *")
	r := c.IMAP("SELECT INBOX", "OK *")
	if r.Has("* * RECENT") {
		t.Fatalf("RECENT after ENABLE IMAP4rev2: %q", r.Untagged)
	}
	c.IMAP("SEARCH RETURN (SAVE) SUBJECT alpha", "OK *")
	r = c.IMAP("FETCH $ (UID)", "OK *")
	if len(r.Untagged) != 2 || !r.Has("* 1 FETCH (UID 1)") || !r.Has("* 3 FETCH (UID 3)") {
		t.Fatalf("FETCH $: %q", r.Untagged)
	}
	c.IMAP(`STORE $ +FLAGS.SILENT (\Deleted)`, "OK *")
	c.IMAP("UNSELECT", "OK *")
	if got := f.files(t, ""); len(got) != 3 {
		t.Fatalf("UNSELECT removed messages: %q", got)
	}
	c.IMAP("SELECT INBOX", "OK *")
	r = c.IMAP("CLOSE", "OK *")
	if r.Has("* * EXPUNGE") {
		t.Fatalf("CLOSE sent EXPUNGE: %q", r.Untagged)
	}
	if got := f.files(t, ""); len(got) != 1 {
		t.Fatalf("after CLOSE: %q", got)
	}
	r = c.IMAP("STATUS INBOX (MESSAGES UIDNEXT)", "OK *")
	if !r.Has("* STATUS INBOX (MESSAGES 1 UIDNEXT 4)") {
		t.Fatalf("STATUS: %q", r.Untagged)
	}
}

// TestIMAPEnvelopeCacheNeverStale: the shared envelope cache answers the
// second FETCH, and a folder deleted and made again within the second (so
// perhaps with the same UIDVALIDITY) never shows the old message's
// envelope for the new UID 1.
func TestIMAPEnvelopeCacheNeverStale(t *testing.T) {
	f := newIMAPFixture(t)
	c := f.login(t)
	for _, subject := range []string{"old one", "new one"} {
		c.IMAP("CREATE X", "OK *")
		msg := "Subject: " + subject + "\r\n\r\nx\r\n"
		c.Send(fmt.Sprintf("a APPEND X {%d+}\r\n%s\r\n", len(msg), msg))
		c.Expect("a OK [APPENDUID * 1] *")
		c.IMAP("SELECT X", "OK *")
		for i := 0; i < 2; i++ {
			r := c.IMAP("FETCH 1 ENVELOPE", "OK *")
			if !r.Has(`* 1 FETCH (UID 1 ENVELOPE (NIL "` + subject + `" *`) {
				t.Fatalf("%s, fetch %d: %q", subject, i, r.Untagged)
			}
		}
		c.IMAP("UNSELECT", "OK *")
		c.IMAP("DELETE X", "OK *")
	}
}

// TestIMAPListSubscribedNonExistent: a subscribed name that is no folder
// is listed by LIST (SUBSCRIBED) as \NonExistent \Subscribed, and not by a
// plain LIST (RFC 5258 §3.1).
func TestIMAPListSubscribedNonExistent(t *testing.T) {
	f := newIMAPFixture(t)
	c := f.login(t)
	c.IMAP("SUBSCRIBE Gone", "OK *")
	r := c.IMAP(`LIST (SUBSCRIBED) "" "*"`, "OK *")
	if !r.Has(`* LIST (\NonExistent \Subscribed) "/" "Gone"`) || !r.Has(`* LIST (*\Subscribed*) "/" "Sent"`) {
		t.Fatalf("LIST (SUBSCRIBED): %q", r.Untagged)
	}
	r = c.IMAP(`LIST "" "*"`, "OK *")
	if r.Has(`* LIST * "Gone"`) {
		t.Fatalf("plain LIST shows a name that is no folder: %q", r.Untagged)
	}
}
