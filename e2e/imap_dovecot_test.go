package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// Dovecot interop: Dovecot's own imap binary, run in PREAUTH mode on its
// stdin/stdout (no master process, no login service), reads the Maildir
// Postoffice wrote and reports the same UIDVALIDITY, UIDs, flags and
// keywords; and Postoffice reads a Maildir Dovecot wrote the same way.

const (
	dovecotBin  = "/usr/sbin/dovecot"
	dovecotIMAP = "/usr/lib/dovecot/imap"
)

// nobody is the account Dovecot's imap runs as when the test runs as root:
// it refuses mail access as root ("Mail access not allowed for root"),
// and as root it drops to mail_uid itself.
const nobody = 65534

func needDovecot(t *testing.T) {
	requireMaildir(t, "Dovecot reads and writes the Maildir itself")
	t.Helper()
	for _, f := range []string{dovecotBin, dovecotIMAP} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("Dovecot not installed (%s): apt-get install dovecot-imapd", f)
		}
	}
}

// dovecotSession runs Dovecot's imap on the Maildir of user "user" under
// mailboxDir (INBOX in mailboxDir/user, folders as Maildir++ .Name
// directories, Dovecot's index files in the folder directories as a real
// installation keeps them) and returns a client connected to it, the
// PREAUTH greeting read. The session ends (LOGOUT, process reaped) when
// the test ends or when the returned function is called.
//
// As root the Maildir is first handed to nobody, whom Dovecot becomes;
// Postoffice, running as root, reads and writes it either way.
func dovecotSession(t *testing.T, mailboxDir string) (*testsupport.Conn, func()) {
	t.Helper()
	needDovecot(t)
	conf := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = nobody, nobody
		// nobody must reach the Maildir through the test's 0700 temp dirs.
		for d := filepath.Dir(mailboxDir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(mailboxDir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, root := range []string{mailboxDir, conf} {
			if err := filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(path, uid, gid)
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg := fmt.Sprintf(`mail_location = maildir:%s/user
namespace inbox {
  inbox = yes
  separator = /
}
mail_uid = %d
mail_gid = %d
first_valid_uid = %d
first_valid_gid = %d
base_dir = %s/run
state_dir = %s/state
ssl = no
`, mailboxDir, uid, gid, min(uid, 500), min(gid, 500), conf, conf)
	if err := os.WriteFile(filepath.Join(conf, "dovecot.conf"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Pipes, not a socket: on a socket Dovecot's imap takes itself for
	// started by inetd and refuses to serve.
	nc, theirIn, theirOut := pipeConn(t)
	cmd := exec.Command(dovecotIMAP, "-c", filepath.Join(conf, "dovecot.conf"))
	cmd.Env = []string{"USER=user", "HOME=" + conf, "PATH=/usr/bin:/bin"}
	cmd.Stdin, cmd.Stdout = theirIn, theirOut
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirIn.Close()
	theirOut.Close()
	c := testsupport.NewConn(t, nc)
	done := false
	end := func() {
		if done {
			return
		}
		done = true
		c.Send("zz LOGOUT\r\n")
		c.IMAPUntil("zz")
		nc.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("dovecot imap: %v\n%s", err, stderr.String())
		}
		if strings.Contains(stderr.String(), "Error:") || strings.Contains(stderr.String(), "Panic:") {
			t.Errorf("dovecot imap logged errors:\n%s", stderr.String())
		}
	}
	t.Cleanup(func() {
		if !done {
			done = true
			nc.Close()
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	if l, err := c.ReadLine(); err != nil || !strings.HasPrefix(l, "* PREAUTH ") {
		t.Fatalf("dovecot greeting %q, %v\n%s", l, err, stderr.String())
	}
	return c, end
}

// pipeConn returns a net.Conn over two pipes and the ends for the other
// process: its stdin (what the Conn writes) and stdout (what it reads).
func pipeConn(t *testing.T) (net.Conn, *os.File, *os.File) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return &pipes{r: outR, w: inW}, inR, outW
}

// pipes is a net.Conn over a read pipe and a write pipe; os.File gives
// pipes deadlines.
type pipes struct{ r, w *os.File }

func (p *pipes) Read(b []byte) (int, error)  { return p.r.Read(b) }
func (p *pipes) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipes) Close() error {
	p.w.Close()
	return p.r.Close()
}
func (p *pipes) LocalAddr() net.Addr  { return pipeAddr{} }
func (p *pipes) RemoteAddr() net.Addr { return pipeAddr{} }
func (p *pipes) SetDeadline(t time.Time) error {
	p.r.SetDeadline(t)
	return p.w.SetDeadline(t)
}
func (p *pipes) SetReadDeadline(t time.Time) error  { return p.r.SetReadDeadline(t) }
func (p *pipes) SetWriteDeadline(t time.Time) error { return p.w.SetWriteDeadline(t) }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "dovecot-stdio" }

// imapMsg is what a test compares of one message of a folder.
type imapMsg struct {
	Flags string // sorted, space separated, \Recent left out
	Size  string // RFC822.SIZE
	ID    string // the Message-ID field's value
	Body  string // BODY[]
}

// folderView is a folder as a client sees it after SELECT.
type folderView struct {
	Validity uint32
	Exists   int
	Msgs     map[uint32]imapMsg
}

var (
	validityRe  = regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`)
	existsRe    = regexp.MustCompile(`^\* (\d+) EXISTS$`)
	fetchRe     = regexp.MustCompile(`(?s)^\* (\d+) FETCH \((.*)\)$`)
	messageIDRe = regexp.MustCompile(`(?im)^Message-ID:[ \t]*(\S+)\r?$`)
)

// viewFolder selects name (EXAMINE, so that nothing changes) and fetches
// every message's UID, flags, size and body.
func viewFolder(t *testing.T, c *testsupport.Conn, name string) folderView {
	t.Helper()
	r := c.IMAP("EXAMINE "+imapQuote(name), "OK *")
	v := folderView{Exists: -1, Msgs: map[uint32]imapMsg{}}
	for _, l := range r.Untagged {
		if m := validityRe.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 32)
			v.Validity = uint32(n)
		}
		if m := existsRe.FindStringSubmatch(l); m != nil {
			v.Exists, _ = strconv.Atoi(m[1])
		}
	}
	if v.Validity == 0 || v.Exists < 0 {
		t.Fatalf("EXAMINE %s: no UIDVALIDITY or EXISTS in %q", name, r.Untagged)
	}
	if v.Exists > 0 {
		for uid, items := range fetchAll(t, c, "1:* (UID FLAGS RFC822.SIZE BODY.PEEK[])") {
			m := imapMsg{Flags: normFlags(items["FLAGS"]), Size: items["RFC822.SIZE"], Body: items["BODY[]"]}
			if id := messageIDRe.FindStringSubmatch(m.Body); id != nil {
				m.ID = id[1]
			}
			v.Msgs[uid] = m
		}
	}
	if len(v.Msgs) != v.Exists {
		t.Fatalf("%s: %d EXISTS but %d messages fetched", name, v.Exists, len(v.Msgs))
	}
	c.IMAP("UNSELECT", "OK *")
	return v
}

// fetchAll runs "UID FETCH args" (args starting with a set) on the selected
// folder and returns each message's items by UID.
func fetchAll(t *testing.T, c *testsupport.Conn, args string) map[uint32]map[string]string {
	t.Helper()
	r := c.IMAP("UID FETCH "+args, "OK *")
	out := map[uint32]map[string]string{}
	for _, l := range r.Untagged {
		m := fetchRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		items, err := parseFetchItems(m[2])
		if err != nil {
			t.Fatalf("%v in %.300q", err, l)
		}
		uid, err := strconv.ParseUint(items["UID"], 10, 32)
		if err != nil {
			t.Fatalf("FETCH without UID: %.300q", l)
		}
		out[uint32(uid)] = items
	}
	return out
}

// parseFetchItems splits the inside of a FETCH response's parentheses into
// item name -> value: a parenthesized list without its parentheses, a
// literal's or a quoted string's content, or an atom. A name keeps its
// section ("BODY[]", "BODY[HEADER.FIELDS (MESSAGE-ID)]").
func parseFetchItems(s string) (map[string]string, error) {
	out := map[string]string{}
	i := 0
	for i < len(s) {
		for i < len(s) && s[i] == ' ' {
			i++
		}
		start := i
		depth := 0
		for i < len(s) && (depth > 0 || s[i] != ' ') {
			switch s[i] {
			case '[':
				depth++
			case ']':
				depth--
			}
			i++
		}
		name := strings.ToUpper(s[start:i])
		if i >= len(s) {
			return nil, fmt.Errorf("FETCH item %q without a value", name)
		}
		i++
		var val string
		switch {
		case s[i] == '(':
			j, d := i, 0
			for ; j < len(s); j++ {
				if s[j] == '(' {
					d++
				} else if s[j] == ')' {
					d--
					if d == 0 {
						break
					}
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unbalanced list of %s", name)
			}
			val, i = s[i+1:j], j+1
		case s[i] == '{':
			end := strings.Index(s[i:], "}\r\n")
			if end < 0 {
				return nil, fmt.Errorf("bad literal of %s", name)
			}
			n, err := strconv.Atoi(strings.TrimSuffix(s[i+1:i+end], "+"))
			if err != nil || i+end+3+n > len(s) {
				return nil, fmt.Errorf("bad literal size of %s", name)
			}
			i += end + 3
			val, i = s[i:i+n], i+n
		case s[i] == '"':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			val, i = b.String(), j+1
		default:
			j := i
			for j < len(s) && s[j] != ' ' {
				j++
			}
			val, i = s[i:j], j
		}
		out[name] = val
	}
	return out, nil
}

// normFlags sorts a flag list (case kept; system flags are compared as
// each server spells them, which is RFC 9051's spelling) and drops
// \Recent, which Postoffice does not keep and Dovecot reports per session.
func normFlags(list string) string {
	var fs []string
	for _, f := range strings.Fields(list) {
		if !strings.EqualFold(f, `\Recent`) {
			fs = append(fs, f)
		}
	}
	sort.Strings(fs)
	return strings.Join(fs, " ")
}

func imapQuote(s string) string { return strconv.Quote(s) }

// listFolders returns the folder names of LIST "" "*" (or LSUB), sorted.
func listFolders(t *testing.T, c *testsupport.Conn, cmd string) []string {
	t.Helper()
	r := c.IMAP(cmd+` "" "*"`, "OK *")
	re := regexp.MustCompile(`^\* ` + cmd + ` \([^)]*\) (?:"[^"]*"|NIL) (.+)$`)
	var names []string
	for _, l := range r.Untagged {
		m := re.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s: unexpected line %q", cmd, l)
		}
		n := m[1]
		if uq, err := strconv.Unquote(n); err == nil {
			n = uq
		}
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// compareViews fails the test where got (who) differs from want.
func compareViews(t *testing.T, folder, who string, want, got folderView, bodies bool) {
	t.Helper()
	if got.Validity != want.Validity {
		t.Errorf("%s %s: UIDVALIDITY %d, want %d", who, folder, got.Validity, want.Validity)
	}
	if got.Exists != want.Exists {
		t.Errorf("%s %s: %d messages, want %d", who, folder, got.Exists, want.Exists)
	}
	for uid, w := range want.Msgs {
		g, ok := got.Msgs[uid]
		switch {
		case !ok:
			t.Errorf("%s %s: UID %d (%s) missing", who, folder, uid, w.ID)
		case g.ID != w.ID:
			t.Errorf("%s %s: UID %d is %s, want %s", who, folder, uid, g.ID, w.ID)
		case g.Flags != w.Flags:
			t.Errorf("%s %s: UID %d has FLAGS (%s), want (%s)", who, folder, uid, g.Flags, w.Flags)
		case bodies && g.Size != w.Size:
			t.Errorf("%s %s: UID %d has RFC822.SIZE %s, want %s", who, folder, uid, g.Size, w.Size)
		case bodies && g.Body != w.Body:
			t.Errorf("%s %s: UID %d BODY[] differs:\n got %q\nwant %q", who, folder, uid, g.Body, w.Body)
		}
	}
	for uid, g := range got.Msgs {
		if _, ok := want.Msgs[uid]; !ok {
			t.Errorf("%s %s: extra UID %d (%s)", who, folder, uid, g.ID)
		}
	}
}

func imapDial(t *testing.T, p *proc) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, p.Addr("imap"))
	c.IMAPLogin("user", "pass")
	return c
}

// uidsByID maps Message-ID -> UID of a view.
func uidsByID(v folderView) map[string]uint32 {
	out := map[string]uint32{}
	for uid, m := range v.Msgs {
		out[m.ID] = uid
	}
	return out
}

// Postoffice delivers by SMTP; an IMAP session of Postoffice assigns the
// UIDs, sets system flags and keywords, expunges one message and moves two
// (one with a keyword) to Archive. Dovecot, on the same Maildir, reports
// the same UIDVALIDITY, UIDs, FLAGS (keywords included), sizes, bodies and
// counts in INBOX and Archive; and Postoffice, started again on the Maildir
// Dovecot has since touched (new/ moved to cur/, its uidlist rewritten,
// its index files added), still reports the same.
func TestDovecotReadsPostofficeMaildir(t *testing.T) {
	requireMaildir(t, "Dovecot reads the Maildir")
	needDovecot(t)
	dir := filepath.Join(t.TempDir(), "mailbox")
	p := start(t, dir)
	for i := 1; i <= 7; i++ {
		sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"},
			fmt.Sprintf("Message-ID: <m%d@test>\r\nSubject: interop %d\r\n\r\nbody %d\r\n..dot line\r\n", i, i, i))
	}
	c := imapDial(t, p)
	c.IMAP("SELECT INBOX", "OK *")
	inbox := fetchAll(t, c, "1:* (UID)")
	if len(inbox) != 7 {
		t.Fatalf("INBOX has %d messages, want 7", len(inbox))
	}
	// Sequence numbers 1..7 are m1..m7 (delivery order).
	c.IMAP(`STORE 1 +FLAGS (\Seen \Flagged)`, "OK *")
	c.IMAP(`STORE 2 +FLAGS (\Answered Work $Label1)`, "OK *")
	c.IMAP(`STORE 3 +FLAGS (\Draft \Seen Later)`, "OK *")
	c.IMAP(`STORE 4 +FLAGS (\Deleted)`, "OK *") // kept: \Deleted without EXPUNGE
	c.IMAP(`STORE 6 +FLAGS (\Deleted)`, "OK *")
	c.IMAP(`UID EXPUNGE `+strconv.Itoa(int(uidOfSeq(t, c, 6))), "OK *")
	for _, seq := range []string{"2", "4"} { // m2, then m5
		// RFC 6851 §4.3: COPYUID comes in an untagged OK before the EXPUNGE.
		if r := c.IMAP("MOVE "+seq+" Archive", "OK *"); !r.Has("* OK [COPYUID *") {
			t.Fatalf("MOVE without COPYUID: %q", r.Untagged)
		}
	}
	c.IMAP("UNSELECT", "OK *") // not CLOSE: m4 stays, \Deleted

	want := map[string]folderView{"INBOX": viewFolder(t, c, "INBOX"), "Archive": viewFolder(t, c, "Archive")}
	if want["INBOX"].Exists != 4 || want["Archive"].Exists != 2 {
		t.Fatalf("Postoffice: INBOX %d, Archive %d messages; want 4 and 2", want["INBOX"].Exists, want["Archive"].Exists)
	}
	ids := uidsByID(want["Archive"])
	if kw := want["Archive"].Msgs[ids["<m2@test>"]].Flags; kw != `$Label1 Work \Answered` {
		t.Fatalf("Postoffice: moved m2 has FLAGS (%s)", kw)
	}
	c.IMAP("LOGOUT", "OK *")
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("postoffice exited %d", code)
	}

	d, end := dovecotSession(t, dir)
	for _, f := range []string{"INBOX", "Archive"} {
		compareViews(t, f, "Dovecot", want[f], viewFolder(t, d, f), true)
	}
	// Dovecot lists the folders Postoffice created.
	names := listFolders(t, d, "LIST")
	for _, f := range []string{"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"} {
		if !slices.Contains(names, f) {
			t.Errorf("Dovecot does not list %s: %q", f, names)
		}
	}
	end()

	p = start(t, dir)
	c = imapDial(t, p)
	for _, f := range []string{"INBOX", "Archive"} {
		compareViews(t, f, "Postoffice after Dovecot", want[f], viewFolder(t, c, f), true)
	}
	// A new message after all that gets a UID above every UID Dovecot and
	// Postoffice gave before, in both servers.
	sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Message-ID: <m8@test>\r\n\r\nlate\r\n")
	v := viewFolder(t, c, "INBOX")
	newUID := uidsByID(v)["<m8@test>"]
	for uid := range want["INBOX"].Msgs {
		if newUID <= uid {
			t.Errorf("new message got UID %d, not above %d", newUID, uid)
		}
	}
	c.IMAP("LOGOUT", "OK *")
	p.stop(syscall.SIGTERM)
	d, end = dovecotSession(t, dir)
	compareViews(t, "INBOX", "Dovecot after Postoffice", v, viewFolder(t, d, "INBOX"), true)
	end()
}

// uidOfSeq returns the UID of message seq of the selected folder.
func uidOfSeq(t *testing.T, c *testsupport.Conn, seq int) uint32 {
	t.Helper()
	r := c.IMAP(fmt.Sprintf("FETCH %d (UID)", seq), "OK *")
	for _, l := range r.Untagged {
		if m := fetchRe.FindStringSubmatch(l); m != nil {
			items, err := parseFetchItems(m[2])
			if err == nil {
				n, _ := strconv.ParseUint(items["UID"], 10, 32)
				return uint32(n)
			}
		}
	}
	t.Fatalf("no UID for message %d: %q", seq, r.Untagged)
	return 0
}

// appendLiteral APPENDs msg to folder with flags as a LITERAL+ literal and
// returns the tagged status.
func appendLiteral(t *testing.T, c *testsupport.Conn, folder, flags, msg string) string {
	t.Helper()
	r := c.IMAP(fmt.Sprintf("APPEND %s (%s) {%d+}\r\n%s", imapQuote(folder), flags, len(msg), msg), "OK *")
	return r.Status
}

// Dovecot writes a Maildir: folders (one nested, one with a non-ASCII
// name), subscriptions, APPENDs with flags and keywords, STORE, EXPUNGE,
// COPY. Postoffice started on it reports the same UIDVALIDITY, UIDs, flags,
// sizes and folder list (plus the special-use folders it creates), serves
// each body byte for byte as Dovecot does, and POP3 serves INBOX.
func TestPostofficeReadsDovecotMaildir(t *testing.T) {
	requireMaildir(t, "reads a Maildir Dovecot wrote")
	needDovecot(t)
	dir := filepath.Join(t.TempDir(), "mailbox")
	d, end := dovecotSession(t, dir)
	for _, f := range []string{"Work", "Work/Sub", "Entw&APw-rfe"} {
		d.IMAP("CREATE "+imapQuote(f), "OK *")
	}
	d.IMAP(`SUBSCRIBE "INBOX"`, "OK *")
	d.IMAP(`SUBSCRIBE "Work"`, "OK *")
	d.IMAP(`SUBSCRIBE "Entw&APw-rfe"`, "OK *")
	msg := func(i int, extra string) string {
		return fmt.Sprintf("Message-ID: <d%d@test>\r\nFrom: A <a@test>\r\nSubject: dovecot %d\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n%sline two\r\n.line with a dot\r\n", i, i, extra)
	}
	long := strings.Repeat("a long line of text that is the body of a message stored by dovecot\r\n", 300)
	appendLiteral(t, d, "INBOX", `\Seen`, msg(1, ""))
	appendLiteral(t, d, "INBOX", `\Flagged $Important`, msg(2, "8bit: gr\xc3\xbc\xc3\x9fe\r\n"))
	appendLiteral(t, d, "INBOX", ``, msg(3, long))
	appendLiteral(t, d, "INBOX", `\Seen`, msg(4, ""))
	appendLiteral(t, d, "INBOX", ``, strings.TrimSuffix(msg(5, ""), "\r\n")) // no final CRLF
	appendLiteral(t, d, "Work", `\Answered \Seen Project`, msg(6, ""))
	appendLiteral(t, d, "Work", `Project Later`, msg(7, ""))
	appendLiteral(t, d, "Entw&APw-rfe", `\Draft`, msg(8, ""))
	d.IMAP("SELECT INBOX", "OK *")
	d.IMAP(`STORE 3 +FLAGS (\Draft Later)`, "OK *")
	d.IMAP(`STORE 4 +FLAGS (\Deleted)`, "OK *")
	d.IMAP("EXPUNGE", "OK *")
	d.IMAP(`COPY 1 "Work/Sub"`, "OK *")
	d.IMAP("SELECT Work", "OK *")
	d.IMAP(`STORE 2 FLAGS (\Seen Later)`, "OK *")
	d.IMAP("CLOSE", "OK *")

	folders := []string{"INBOX", "Work", "Work/Sub", "Entw&APw-rfe"}
	want := map[string]folderView{}
	for _, f := range folders {
		want[f] = viewFolder(t, d, f)
	}
	if want["INBOX"].Exists != 4 || want["Work"].Exists != 2 {
		t.Fatalf("Dovecot: INBOX %d, Work %d messages; want 4 and 2", want["INBOX"].Exists, want["Work"].Exists)
	}
	dovecotList := listFolders(t, d, "LIST")
	dovecotLsub := listFolders(t, d, "LSUB")
	end()

	p := start(t, dir)
	c := imapDial(t, p)
	for _, f := range folders {
		compareViews(t, f, "Postoffice", want[f], viewFolder(t, c, f), true)
	}
	// Postoffice lists what Dovecot lists, plus the special-use folders it
	// creates at the first login.
	defaults := []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}
	if got := without(listFolders(t, c, "LIST"), defaults); !slices.Equal(got, dovecotList) {
		t.Errorf("Postoffice LIST %q, Dovecot %q", got, dovecotList)
	}
	if got := without(listFolders(t, c, "LSUB"), defaults); !slices.Equal(got, dovecotLsub) {
		t.Errorf("Postoffice LSUB %q, Dovecot %q", got, dovecotLsub)
	}
	c.IMAP("LOGOUT", "OK *")

	// POP3 serves INBOX: each message as Dovecot's BODY[], its LIST size
	// Dovecot's RFC822.SIZE.
	bodies := map[string]string{}
	for _, m := range want["INBOX"].Msgs {
		// RFC 1939 §3: a multi-line response ends its last line with CRLF.
		b := m.Body
		if !strings.HasSuffix(b, "\r\n") {
			b += "\r\n"
		}
		bodies[b] = m.Size
	}
	pc := loginWhenFree(t, p.Addr("pop3"), "user", "pass")
	pc.Send("STAT\r\n")
	pc.Expect(fmt.Sprintf("+OK %d *", len(bodies)))
	pc.Send("LIST\r\n")
	sizes := pc.ExpectMulti("+OK*")
	for i := 1; i <= len(bodies); i++ {
		pc.Send(fmt.Sprintf("RETR %d\r\n", i))
		pc.Expect("+OK*")
		body := pc.MultilineText()
		size, ok := bodies[body]
		if !ok {
			t.Errorf("POP3 RETR %d is no message of Dovecot's INBOX: %.200q", i, body)
			continue
		}
		if sizes[i-1] != fmt.Sprintf("%d %s", i, size) {
			t.Errorf("POP3 LIST %q, Dovecot's RFC822.SIZE %s", sizes[i-1], size)
		}
		delete(bodies, body)
	}
	pc.Send("QUIT\r\n")
	pc.Expect("+OK*")
}

// without returns names less those in drop.
func without(names, drop []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(drop, n) {
			out = append(out, n)
		}
	}
	return out
}
