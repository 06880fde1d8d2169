package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// The persistent search index, end to end: one SQLite file per folder
// outside the Maildir folders (INBOX's at <mailbox-dir>/.index/<user>/INBOX.sqlite),
// word-prefix, case- and accent-insensitive search over the web API and
// IMAP SEARCH, changes made to the Maildir by other programs, a damaged or
// missing index file, kill -9 while indexing, and `postoffice mailbox
// reindex`. The Maildir is the truth: whatever happens to the index, every
// message is served.

// indexFile is where user's INBOX index file is, below the mailbox
// directory.
const indexFile = ".index/user/INBOX.sqlite"

// extWait bounds the wait for what the specification promises "within one
// second".
const extWait = 3 * time.Second

// idxMessage is the web API's summary of one message, as these tests read it.
type idxMessage struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	From    string `json:"from"`
	Read    bool   `json:"read"`
}

// idxList is one answer of GET /api/v1/mailboxes/user/messages.
type idxList struct {
	Total    int          `json:"total"`
	Messages []idxMessage `json:"messages"`
}

func (l idxList) ids() []string {
	out := make([]string, len(l.Messages))
	for i, m := range l.Messages {
		out[i] = m.ID
	}
	return out
}

// idxSearch lists user's INBOX through the web API with the search q (all
// messages when q is empty), up to 500 of them.
func idxSearch(t *testing.T, p *proc, q string) idxList {
	t.Helper()
	u := "http://" + p.Addr("http") + "/api/v1/mailboxes/user/messages?per_page=500"
	if q != "" {
		u += "&q=" + url.QueryEscape(q)
	}
	var l idxList
	getJSON(t, u, &l)
	return l
}

// expectHits checks that the search q finds exactly the messages ids,
// newest first, and that "total" agrees.
func expectHits(t *testing.T, p *proc, q string, ids ...string) {
	t.Helper()
	l := idxSearch(t, p, q)
	if ids == nil {
		ids = []string{}
	}
	if got := l.ids(); l.Total != len(ids) || !slices.Equal(got, ids) {
		t.Errorf("search %q: total %d, ids %q; want total %d, ids %q", q, l.Total, got, len(ids), ids)
	}
}

// waitTotal polls the web listing of the search q until its total is want,
// for at most extWait, and returns the last answer.
func waitTotal(t *testing.T, p *proc, q string, want int) idxList {
	t.Helper()
	var l idxList
	if !testsupport.WaitUntil(extWait, func() bool {
		l = idxSearch(t, p, q)
		return l.Total == want
	}) {
		t.Errorf("search %q: total %d after %v, want %d (ids %q)", q, l.Total, extWait, want, l.ids())
	}
	return l
}

// crlf turns the LF line ends of a message written in a Go literal into
// CRLF, for SMTP DATA and for message files. No line may start with '.'.
func crlf(s string) string {
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// deliver sends one message over SMTP to user and returns its id.
func deliver(t *testing.T, p *proc, msg string) string {
	t.Helper()
	return sendRaw(t, p.Addr("smtp"), "sender@example.net", []string{"user@mx.test"}, crlf(msg))
}

// waitIndexFile waits until the INBOX index file of user exists and is a
// SQLite database, and returns its path.
func waitIndexFile(t *testing.T, dir string) string {
	requireMaildir(t, "waits for the SQLite index file")
	t.Helper()
	path := filepath.Join(dir, indexFile)
	var head []byte
	if !testsupport.WaitUntil(extWait, func() bool {
		b, err := os.ReadFile(path)
		if err != nil || len(b) < 16 {
			return false
		}
		head = b[:16]
		return string(head) == "SQLite format 3\x00"
	}) {
		t.Fatalf("%s is not a SQLite database after %v (starts %q)", path, extWait, head)
	}
	return path
}

// popSnapshot logs in over POP3 and returns the STAT line and the LIST and
// UIDL listings, then QUITs.
func popSnapshot(t *testing.T, p *proc) (stat, list, uidl string) {
	t.Helper()
	c := loginWhenFree(t, p.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	stat = c.Expect("+OK *")
	c.Send("LIST\r\n")
	c.Expect("+OK*")
	list = c.MultilineText()
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	uidl = c.MultilineText()
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	return stat, list, uidl
}

// popCount returns POP3 STAT's message count.
func popCount(t *testing.T, p *proc) int {
	t.Helper()
	stat, _, _ := popSnapshot(t, p)
	var n int
	var size int64
	if _, err := fmt.Sscanf(stat, "+OK %d %d", &n, &size); err != nil {
		t.Fatalf("STAT %q: %v", stat, err)
	}
	return n
}

// idxIMAP logs in over IMAP and selects INBOX.
func idxIMAP(t *testing.T, p *proc) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, p.Addr("imap"))
	c.IMAPLogin("user", "pass")
	c.IMAP("SELECT INBOX", "OK *")
	return c
}

var searchLineRe = regexp.MustCompile(`^\* SEARCH( \d+)*$`)

// imapSearch runs SEARCH key value and returns the sequence numbers found.
// A value with octets outside printable ASCII goes as a LITERAL+ literal,
// with CHARSET UTF-8.
func imapSearch(t *testing.T, c *testsupport.Conn, key, value string) []int {
	t.Helper()
	cmd := fmt.Sprintf("SEARCH %s %q", key, value)
	for i := 0; i < len(value); i++ {
		if value[i] < 0x20 || value[i] > 0x7e {
			cmd = fmt.Sprintf("SEARCH CHARSET UTF-8 %s {%d+}\r\n%s", key, len(value), value)
			break
		}
	}
	r := c.IMAP(cmd, "OK *")
	var out []int
	found := false
	for _, l := range r.Untagged {
		if !searchLineRe.MatchString(l) {
			continue
		}
		found = true
		for _, f := range strings.Fields(l)[2:] {
			n, _ := strconv.Atoi(f)
			out = append(out, n)
		}
	}
	if !found {
		t.Fatalf("SEARCH %s %q: no SEARCH response in %q", key, value, r.Untagged)
	}
	slices.Sort(out)
	return out
}

// expectIMAPHits checks that SEARCH key value finds exactly seqs.
func expectIMAPHits(t *testing.T, c *testsupport.Conn, key, value string, seqs ...int) {
	t.Helper()
	if got := imapSearch(t, c, key, value); !slices.Equal(got, seqs) {
		t.Errorf("IMAP SEARCH %s %q: %v, want %v", key, value, got, seqs)
	}
}

// sjisText is the Shift_JIS encoding of the Japanese texts of these tests,
// written out (as iconv -t SHIFT_JIS gives them) so that the test needs no
// encoder and go.mod no direct golang.org/x/text.
var sjisText = map[string]string{
	"会議の議事録":    "\x89\xef\x8b\x63\x82\xcc\x8b\x63\x8e\x96\x98\x5e",
	"東京で会いましょう": "\x93\x8c\x8b\x9e\x82\xc5\x89\xef\x82\xa2\x82\xdc\x82\xb5\x82\xe5\x82\xa4",
}

// sjis returns s in Shift_JIS.
func sjis(t *testing.T, s string) string {
	t.Helper()
	b, ok := sjisText[s]
	if !ok {
		t.Fatalf("no Shift_JIS for %q", s)
	}
	return b
}

// b64Lines is base64 of s in lines of 76 characters, each ending in LF.
func b64Lines(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\n")
	return b.String()
}

// Messages shared by the search tests.
const (
	msgInvoice = `From: Zoltan Accounts <zoltan@example.com>
To: Quentin Buyer <quentin@example.org>
Subject: Invoice for March

Please find the payment details below.
`
	msgCafe = `From: =?UTF-8?Q?Am=C3=A9lie_Poulain?= <amelie@example.fr>
To: user@mx.test
Subject: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Une crème brûlée, s'il vous plaît.
`
	msgCreme = `From: Chef <chef@example.com>
To: user@mx.test
Subject: Recipe

Whip the creme until stiff.
`
)

// TestIndexFileOutsideTheFolders: once a message is delivered and listed, the
// INBOX index is a SQLite database at <mailbox-dir>/.index/<user>/INBOX.sqlite,
// where no Maildir reader looks.
func TestIndexFileOutsideTheFolders(t *testing.T) {
	requireMaildir(t, "checks where the SQLite index files are")
	p := start(t, "")
	id := deliver(t, p, msgInvoice)
	if l := idxSearch(t, p, ""); l.Total != 1 || len(l.Messages) != 1 || l.Messages[0].ID != id {
		t.Fatalf("listing: %+v", l)
	}
	waitIndexFile(t, p.dir)
}

// TestIndexSearchFieldsAndWords: plain words match From, To, Subject and
// the body; text:/body:, from:, to: and subject: only their field; every
// term is a word prefix (not any substring), case- and accent-insensitive;
// a quoted phrase matches its words in sequence; results are newest first.
func TestIndexSearchFieldsAndWords(t *testing.T) {
	p := start(t, "")
	inv := deliver(t, p, msgInvoice)
	cafe := deliver(t, p, msgCafe)
	creme := deliver(t, p, msgCreme)

	for _, tc := range []struct {
		q    string
		want []string // newest first
	}{
		// Plain words: any field, word prefixes.
		{"invoice", []string{inv}},
		{"invo", []string{inv}},
		{"INVOICE", []string{inv}},
		{"voice", nil}, // inside a word, not a prefix of one
		{"zoltan", []string{inv}},
		{"quentin", []string{inv}},
		{"payment", []string{inv}},
		{"pay", []string{inv}},
		{"invoice payment", []string{inv}},
		{"invoice stiff", nil},
		// Fields.
		{"from:zoltan", []string{inv}},
		{"from:invoice", nil},
		{"to:quentin", []string{inv}},
		{"to:zoltan", nil},
		{"subject:invoice", []string{inv}},
		{"subject:invo", []string{inv}},
		{"subject:payment", nil},
		{"text:payment", []string{inv}},
		{"body:payment", []string{inv}},
		{"text:invoice", nil},
		{"body:zoltan", nil},
		// Case and accents.
		{"cafe", []string{cafe}},
		{"café", []string{cafe}},
		{"CAFÉ", []string{cafe}},
		{"CRÈME", []string{creme, cafe}},
		{"creme", []string{creme, cafe}},
		{"brulee", []string{cafe}},
		{"brul", []string{cafe}},
		{"plait", []string{cafe}},
		{"from:amelie", []string{cafe}},
		{"Amélie", []string{cafe}},
		{"subject:creme", []string{cafe}},
		{"text:creme", []string{creme, cafe}},
		// Phrases.
		{`"payment details"`, []string{inv}},
		{`"details payment"`, nil},
		{`"creme brulee"`, []string{cafe}},
		{`"whip creme"`, nil},
		{`text:"the creme"`, []string{creme}},
		{`subject:"invoice for march"`, []string{inv}},
		{`subject:"march invoice"`, nil},
	} {
		expectHits(t, p, tc.q, tc.want...)
	}
	if l := idxSearch(t, p, ""); !slices.Equal(l.ids(), []string{creme, cafe, inv}) {
		t.Errorf("listing not newest first: %q", l.ids())
	}
}

// TestIndexSearchCharsetsAndParts: text in ISO-8859-1 quoted-printable,
// Shift_JIS (an RFC 2047 subject and an 8-bit body), UTF-8 in base64, an
// HTML-only body and an attachment's file name are all searchable as
// UTF-8 words; the raw base64 text and HTML markup are not.
func TestIndexSearchCharsetsAndParts(t *testing.T) {
	p := start(t, "")

	latin1 := deliver(t, p, `From: Hans <hans@example.de>
To: user@mx.test
Subject: Reisebericht
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus M=FCnchen
`)

	jaSubject, jaBody := "会議の議事録", "東京で会いましょう"
	japan := deliver(t, p, "From: Taro <taro@example.jp>\nTo: user@mx.test\n"+
		"Subject: =?Shift_JIS?B?"+base64.StdEncoding.EncodeToString([]byte(sjis(t, jaSubject)))+"?=\n"+
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: 8bit\n\n"+
		sjis(t, jaBody)+"\n")

	utf8Text := "Rendez-vous à l'hôtel Élysée demain matin, petit déjeuner compris.\n"
	b64Body := b64Lines(utf8Text)
	b64 := deliver(t, p, `From: Claire <claire@example.fr>
To: user@mx.test
Subject: Rendez-vous
MIME-Version: 1.0
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: base64

`+b64Body)
	run := regexp.MustCompile(`[A-Za-z]{10}`).FindString(b64Body)
	if run == "" {
		t.Fatalf("no run of 10 letters in the base64 body %q", b64Body)
	}

	html := deliver(t, p, `From: Zoo <zoo@example.org>
To: user@mx.test
Subject: Marsupial newsletter
MIME-Version: 1.0
Content-Type: text/html; charset=UTF-8

<html><body><div class="box"><p>The wombat sleeps all afternoon.</p></div></body></html>
`)

	attach := deliver(t, p, `From: Finance <finance@example.com>
To: user@mx.test
Subject: Figures
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=UTF-8

See the attached file.
--b1
Content-Type: application/pdf
Content-Disposition: attachment; filename="quarterly-report.pdf"
Content-Transfer-Encoding: base64

`+b64Lines("%PDF-1.4\n% not really a PDF\n")+`--b1--
`)

	// The subject is decoded to UTF-8 for the listing, too.
	for _, m := range idxSearch(t, p, "").Messages {
		if m.ID == japan && m.Subject != jaSubject {
			t.Errorf("Shift_JIS subject listed as %q, want %q", m.Subject, jaSubject)
		}
	}

	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"munchen", []string{latin1}},
		{"München", []string{latin1}},
		{"MÜNCHEN", []string{latin1}},
		{"grüße", []string{latin1}},
		{"text:munchen", []string{latin1}},
		{"subject:munchen", nil},

		{"会議", []string{japan}},
		{"subject:会議", []string{japan}},
		{"text:会議", nil},
		{"東京", []string{japan}},
		{"text:東京", []string{japan}},
		{"subject:東京", nil},

		{"hotel", []string{b64}},
		{"elysee", []string{b64}},
		{"Élysée", []string{b64}},
		{"text:dejeuner", []string{b64}},
		{run, nil},
		{strings.ToLower(run), nil},
		{"text:" + run, nil},

		{"wombat", []string{html}},
		{"text:wombat", []string{html}},
		{"afternoon", []string{html}},
		{"div", nil},
		{"text:div", nil},

		{"quarterly", []string{attach}},
		{"text:quarterly", []string{attach}},
		{"subject:quarterly", nil},
		{"attached", []string{attach}},
	} {
		expectHits(t, p, tc.q, tc.want...)
	}
}

// TestIndexIMAPSearchAccents: IMAP SEARCH TEXT, BODY, SUBJECT, FROM and TO
// match word prefixes, case- and accent-insensitively, as web search does.
func TestIndexIMAPSearchAccents(t *testing.T) {
	p := start(t, "")
	deliver(t, p, msgInvoice) // 1
	deliver(t, p, msgCafe)    // 2
	deliver(t, p, msgCreme)   // 3
	c := idxIMAP(t, p)

	expectIMAPHits(t, c, "TEXT", "CRÈME", 2, 3)
	expectIMAPHits(t, c, "TEXT", "creme", 2, 3)
	expectIMAPHits(t, c, "TEXT", "invo", 1)
	expectIMAPHits(t, c, "BODY", "crème", 2, 3)
	expectIMAPHits(t, c, "BODY", "brul", 2)
	expectIMAPHits(t, c, "BODY", "brûlée", 2)
	expectIMAPHits(t, c, "BODY", "plait", 2)
	expectIMAPHits(t, c, "BODY", "invoice")
	expectIMAPHits(t, c, "SUBJECT", "cafe", 2)
	expectIMAPHits(t, c, "SUBJECT", "CAFÉ", 2)
	expectIMAPHits(t, c, "SUBJECT", "creme", 2)
	expectIMAPHits(t, c, "SUBJECT", "whip")
	expectIMAPHits(t, c, "FROM", "amelie", 2)
	expectIMAPHits(t, c, "FROM", "Amélie", 2)
	expectIMAPHits(t, c, "TO", "quentin", 1)
	expectIMAPHits(t, c, "TO", "zoltan")
}

// TestIndexIMAPSearchShiftJIS: a Shift_JIS RFC 2047 subject and a
// Shift_JIS body are found by IMAP SEARCH with UTF-8 text.
func TestIndexIMAPSearchShiftJIS(t *testing.T) {
	p := start(t, "")
	deliver(t, p, msgInvoice)                                         // 1
	deliver(t, p, "From: Taro <taro@example.jp>\nTo: user@mx.test\n"+ // 2
		"Subject: =?Shift_JIS?B?"+base64.StdEncoding.EncodeToString([]byte(sjis(t, "会議の議事録")))+"?=\n"+
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: 8bit\n\n"+
		sjis(t, "東京で会いましょう")+"\n")
	c := idxIMAP(t, p)

	expectIMAPHits(t, c, "SUBJECT", "会議", 2)
	expectIMAPHits(t, c, "SUBJECT", "会議の議事録", 2)
	expectIMAPHits(t, c, "TEXT", "会議", 2)
	expectIMAPHits(t, c, "BODY", "東京", 2)
	expectIMAPHits(t, c, "TEXT", "東京", 2)
	expectIMAPHits(t, c, "SUBJECT", "東京")
	expectIMAPHits(t, c, "BODY", "会議")
}

// copyMessage copies a message into user's new/ as cp(1) would: the file
// is created there, then written.
func copyMessage(t *testing.T, dir, name, msg string) {
	requireMaildir(t, "writes a message file into the Maildir")
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(filepath.Join(dir, "user", "new", name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// imapNoopUntil sends NOOP until one of its untagged responses matches
// pattern, for at most extWait.
func imapNoopUntil(t *testing.T, c *testsupport.Conn, pattern string) {
	t.Helper()
	var seen []string
	if !testsupport.WaitUntil(extWait, func() bool {
		r := c.IMAP("NOOP", "OK *")
		seen = append(seen, r.Untagged...)
		return r.Has(pattern)
	}) {
		t.Errorf("IMAP NOOP: no %q within %v (got %q)", pattern, extWait, seen)
	}
}

// TestIndexExternalMaildirChanges: a file copied into new/ by another
// program, the same file renamed to cur/ with ":2,S", and a file removed
// with rm show up within a second in the web listing, its total and
// search, in POP3 at the next login and in IMAP at the next NOOP or
// SELECT.
func TestIndexExternalMaildirChanges(t *testing.T) {
	requireMaildir(t, "changes the Maildir behind the server")
	p := start(t, "")
	first := deliver(t, p, msgInvoice)
	second := deliver(t, p, msgCreme)
	if l := idxSearch(t, p, ""); l.Total != 2 {
		t.Fatalf("listing before: %+v", l)
	}
	expectHits(t, p, "invoice", first)
	c := idxIMAP(t, p)

	// 1. A file copied into new/.
	name := "1732571111.M1P7.otherhost"
	copyMessage(t, p.dir, name, crlf(`From: Outside <outside@example.com>
To: user@mx.test
Subject: Xylophone dropped in by hand
Date: Sat, 07 Dec 2026 09:00:00 +0000

It arrived today.
`))
	l := waitTotal(t, p, "", 3)
	if !slices.Contains(l.ids(), name) {
		t.Errorf("external file %s not listed by its name: %q", name, l.ids())
	}
	waitTotal(t, p, "xylophone", 1)
	if n, _, uidl := popSnapshot(t, p); !strings.HasPrefix(n, "+OK 3 ") || !strings.Contains(uidl, " "+name+"\r\n") {
		t.Errorf("POP3 after the copy: STAT %q, UIDL %q", n, uidl)
	}
	imapNoopUntil(t, c, "* 3 EXISTS")
	if r := c.IMAP("FETCH 3 (UID FLAGS)", "OK *"); r.Has(`* 3 FETCH (*\Seen*`) {
		t.Errorf("the file in new/ is \\Seen: %q", r.Untagged)
	}
	uid3 := c.IMAP("FETCH 3 (UID)", "OK *").Untagged

	// 2. Renamed from new/ to cur/ as read.
	if err := os.Rename(filepath.Join(p.dir, "user", "new", name), filepath.Join(p.dir, "user", "cur", name+":2,S")); err != nil {
		t.Fatal(err)
	}
	if !testsupport.WaitUntil(extWait, func() bool {
		l = idxSearch(t, p, "")
		for _, m := range l.Messages {
			if m.ID == name {
				return m.Read
			}
		}
		return false
	}) {
		t.Errorf("web listing after the rename to :2,S: %+v", l.Messages)
	}
	if l.Total != 3 {
		t.Errorf("total after the rename: %d, want 3", l.Total)
	}
	expectHits(t, p, "xylophone", name)
	expectHits(t, p, "is:read", name)
	if n, _, uidl := popSnapshot(t, p); !strings.HasPrefix(n, "+OK 3 ") || !strings.Contains(uidl, " "+name+"\r\n") {
		t.Errorf("POP3 after the rename: STAT %q, UIDL %q", n, uidl)
	}
	if !testsupport.WaitUntil(extWait, func() bool {
		return c.IMAP("NOOP", "OK *").Has(`* 3 FETCH (*\Seen*`) ||
			c.IMAP("FETCH 3 (FLAGS)", "OK *").Has(`* 3 FETCH (FLAGS (*\Seen*))`)
	}) {
		t.Errorf("IMAP: message 3 not \\Seen after the rename")
	}
	if got := c.IMAP("FETCH 3 (UID)", "OK *").Untagged; !slices.Equal(got, uid3) {
		t.Errorf("IMAP UID changed by the rename: %q, was %q", got, uid3)
	}

	// 3. A delivered file removed with rm.
	var victim string
	for _, f := range mailFiles(t, p.dir, "user") {
		if strings.HasPrefix(filepath.Base(f), first) {
			victim = f
		}
	}
	if victim == "" {
		t.Fatalf("no file of %s in %q", first, mailFiles(t, p.dir, "user"))
	}
	if err := os.Remove(victim); err != nil {
		t.Fatal(err)
	}
	l = waitTotal(t, p, "", 2)
	if slices.Contains(l.ids(), first) {
		t.Errorf("removed message %s still listed", first)
	}
	expectHits(t, p, "invoice")
	expectHits(t, p, "recipe", second)
	if n, _, uidl := popSnapshot(t, p); !strings.HasPrefix(n, "+OK 2 ") || strings.Contains(uidl, first) {
		t.Errorf("POP3 after rm: STAT %q, UIDL %q", n, uidl)
	}
	imapNoopUntil(t, c, "* 1 EXPUNGE")
	if r := c.IMAP("SELECT INBOX", "OK *"); !r.Has("* 2 EXISTS") {
		t.Errorf("SELECT after rm: %q", r.Untagged)
	}
}

// TestIndexDamagedIndexRebuilt: with the index file overwritten with
// garbage, truncated to half its size, or deleted with its -wal and -shm
// files while the server is stopped, the next start serves every message
// (web total, POP3 STAT, LIST and UIDL, search), and logs that the index
// is rebuilt.
func TestIndexDamagedIndexRebuilt(t *testing.T) {
	requireMaildir(t, "damages the SQLite index files")
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			junk := bytes.Repeat([]byte("this is not a database \x00\xff\x13"), int(fi.Size())/26+1)
			if err := os.WriteFile(path, junk[:max(fi.Size(), 4096)], 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"deleted", func(t *testing.T, path string) {
			for _, f := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mailbox")
			p := start(t, dir)
			const n = 40
			ids := make([]string, n)
			for i := range n {
				ids[i] = deliver(t, p, fmt.Sprintf(`From: Sender %d <s%d@example.com>
To: user@mx.test
Subject: Damage test %d

Body of message %d with the word %s and some filler text to give the index a few pages.
`, i, i, i, i, batchWord(i)))
			}
			if l := idxSearch(t, p, ""); l.Total != n {
				t.Fatalf("listing before: total %d", l.Total)
			}
			expectHits(t, p, batchWord(7), ids[7])
			stat, list, uidl := popSnapshot(t, p)
			path := waitIndexFile(t, dir)
			if code := p.stop(syscall.SIGTERM); code != 0 {
				t.Fatalf("stop: exit %d", code)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatalf("index after a clean stop: %v", err)
			}
			tc.damage(t, path)
			t.Logf("index was %d bytes", fi.Size())

			p = start(t, dir)
			if l := idxSearch(t, p, ""); l.Total != n {
				t.Errorf("listing after the damage: total %d, want %d", l.Total, n)
			}
			expectHits(t, p, batchWord(7), ids[7])
			expectHits(t, p, batchWord(n-1), ids[n-1])
			newest := slices.Clone(ids)
			slices.Reverse(newest)
			expectHits(t, p, "subject:damage", newest...)
			s2, l2, u2 := popSnapshot(t, p)
			if s2 != stat || l2 != list || u2 != uidl {
				t.Errorf("POP3 after the damage: STAT %q (was %q), LIST equal %v, UIDL equal %v", s2, stat, l2 == list, u2 == uidl)
			}
			if !testsupport.WaitUntil(extWait, func() bool { return logMentionsIndex(p.Log(), dir) }) {
				t.Errorf("the log does not mention the index")
			}
		})
	}
}

// logMentionsIndex reports whether a line of the log of a server of the
// mailbox directory dir mentions the index. dir itself is taken out first:
// the name of the test that made it says "Index".
func logMentionsIndex(log, dir string) bool {
	for _, l := range strings.Split(strings.ReplaceAll(log, dir, "DIR"), "\n") {
		if strings.Contains(strings.ToLower(l), "index") {
			return true
		}
	}
	return false
}

// batchWord is a word of its own for message i: "kw" and four letters, so
// that no batch word is a prefix of another.
func batchWord(i int) string {
	b := []byte("kw____")
	for k := 5; k >= 2; k-- {
		b[k] = byte('a' + i%26)
		i /= 26
	}
	return string(b)
}

// lastWord is a word only the subject of the last message of a batch has.
const lastWord = "omegafinal"

// batchName is the file name of message i of a generated batch.
func batchName(i int) string {
	return fmt.Sprintf("1732500000.M%06dP4242.batchhost", i)
}

// genBatch writes n messages as files straight into user's new/, as
// another program would: message i has batchWord(i) in its body, and the
// last one, the newest, lastWord in its subject.
func genBatch(t *testing.T, dir string, n int) {
	requireMaildir(t, "writes message files into the Maildir")
	t.Helper()
	newDir := filepath.Join(dir, "user", "new")
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, "user", sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		when := base.Add(time.Duration(i) * time.Second)
		extra := ""
		if i == n-1 {
			extra = " " + lastWord
		}
		msg := crlf(fmt.Sprintf(`From: Batch Sender <batch@example.com>
To: user@mx.test
Subject: Batch message %d%s
Date: %s
Message-ID: <batch%d@example.com>

Routine note number %d with the code word %s.
`, i, extra, when.Format(time.RFC1123Z), i, i, batchWord(i)))
		path := filepath.Join(newDir, batchName(i))
		if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, when, when); err != nil {
			t.Fatal(err)
		}
	}
}

// checkBatch checks that a running server serves every one of n generated
// messages: web total, POP3 STAT, and search for words of the first and
// the last message.
func checkBatch(t *testing.T, p *proc, n int) { checkBatchOf(t, p, n, n) }

// checkBatchOf is checkBatch for a mailbox of total messages, n of them
// generated.
func checkBatchOf(t *testing.T, p *proc, n, total int) {
	t.Helper()
	if l := idxSearch(t, p, ""); l.Total != total {
		t.Errorf("listing: total %d, want %d", l.Total, total)
	}
	expectHits(t, p, lastWord, batchName(n-1))
	expectHits(t, p, batchWord(n-1), batchName(n-1))
	expectHits(t, p, batchWord(0), batchName(0))
	if got := popCount(t, p); got != total {
		t.Errorf("POP3 STAT: %d messages, want %d", got, total)
	}
}

// indexBytes is the size of user's INBOX index and its write-ahead log.
func indexBytes(dir string) int64 {
	var n int64
	for _, f := range []string{indexFile, indexFile + "-wal"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestIndexKillDuringBatchIndexing: 2,000 messages put into new/ as files,
// a start, a listing that sets the server indexing them, and kill -9 soon
// after; the next start serves every message and search finds a word of
// the last one.
func TestIndexKillDuringBatchIndexing(t *testing.T) {
	requireMaildir(t, "indexes message files written to the Maildir")
	const n = 2000
	dir := filepath.Join(t.TempDir(), "mailbox")
	genBatch(t, dir, n)
	p := start(t, dir)
	listed := make(chan struct{})
	go func() {
		defer close(listed)
		hc := &http.Client{Timeout: 30 * time.Second}
		if resp, err := hc.Get("http://" + p.Addr("http") + "/api/v1/mailboxes/user/messages?q=" + lastWord); err == nil {
			resp.Body.Close()
		}
	}()
	// Kill as soon as messages are being written to the index (or the
	// listing is answered).
	testsupport.WaitUntil(10*time.Second, func() bool {
		select {
		case <-listed:
			return true
		default:
			return indexBytes(dir) >= 64<<10
		}
	})
	select {
	case <-listed:
		t.Log("the listing was answered before the kill")
	default:
		t.Log("killed while indexing")
	}
	p.stop(syscall.SIGKILL)
	<-listed

	p = start(t, dir)
	checkBatch(t, p, n)
}

// reindex runs `postoffice mailbox reindex --mailbox-dir dir user` and
// returns its exit code, stdout and stderr.
func reindex(t *testing.T, dir, user string) (int, string, string) {
	requireMaildir(t, "runs \"postoffice mailbox reindex\" on a Maildir")
	t.Helper()
	cmd := exec.Command(binary, "mailbox", "reindex", "--mailbox-dir", dir, user)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestIndexReindexCommand: `postoffice mailbox reindex` rebuilds a user's
// index by hand, its index deleted or garbage: progress on stderr, one
// summary line with the number of messages on stdout, exit 0, and the
// server then finds words of the messages.
func TestIndexReindexCommand(t *testing.T) {
	requireMaildir(t, "runs \"postoffice mailbox reindex\" on a Maildir")
	const n = 2000
	dir := filepath.Join(t.TempDir(), "mailbox")
	genBatch(t, dir, n)
	p := start(t, dir)
	delivered := deliver(t, p, msgInvoice)
	if l := idxSearch(t, p, ""); l.Total != n+1 {
		t.Fatalf("listing: total %d, want %d", l.Total, n+1)
	}
	path := waitIndexFile(t, dir)
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := reindex(t, dir, "user")
	t.Logf("reindex stdout:\n%s\nstderr:\n%s", stdout, stderr)
	if code != 0 {
		t.Fatalf("reindex: exit %d", code)
	}
	if strings.TrimSpace(stderr) == "" {
		t.Errorf("reindex printed no progress on stderr")
	}
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	summary := lines[len(lines)-1]
	if !strings.HasSuffix(stdout, "\n") || strings.TrimSpace(summary) == "" {
		t.Errorf("reindex: no summary line on stdout: %q", stdout)
	} else if !regexp.MustCompile(`\b` + strconv.Itoa(n+1) + `\b`).MatchString(strings.NewReplacer(",", "", "_", "", "\u202f", "").Replace(summary)) {
		t.Errorf("reindex summary %q does not count the %d messages", summary, n+1)
	}
	waitIndexFile(t, dir)

	p = start(t, dir)
	checkBatchOf(t, p, n, n+1)
	expectHits(t, p, "invoice", delivered)
	expectHits(t, p, "text:payment", delivered)

	// An unknown user is an error, not an empty index.
	if code, stdout, stderr := reindex(t, dir, "nosuchuser"); code == 0 {
		t.Errorf("reindex of an unknown user: exit 0\n%s%s", stdout, stderr)
	}
}

// TestIndexReindexKilledHalfway: kill -9 of `postoffice mailbox reindex`
// part way through 5,000 messages; the server then starts and serves
// every message, and search finds a word of the last one.
func TestIndexReindexKilledHalfway(t *testing.T) {
	requireMaildir(t, "runs \"postoffice mailbox reindex\" on a Maildir")
	const n = 5000
	dir := filepath.Join(t.TempDir(), "mailbox")
	genBatch(t, dir, n)

	cmd := exec.Command(binary, "mailbox", "reindex", "--mailbox-dir", dir, "user")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	progress := make(chan string, 256)
	exited := make(chan struct{})
	var (
		errText strings.Builder
		werr    error
	)
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			errText.WriteString(sc.Text() + "\n")
			select {
			case progress <- sc.Text():
			default:
			}
		}
		werr = cmd.Wait()
	}()
	// Kill part way: at a progress line that counts between a quarter and
	// all of the messages (dates and times aside), or once the index and
	// its log hold 256 KiB.
	number := regexp.MustCompile(`\d+`)
	clock := regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]?[\d:.]*|\d+:\d+(:[\d.]+)?`)
	halfway := func() bool {
		for {
			select {
			case <-exited:
				return false
			case l := <-progress:
				for _, f := range number.FindAllString(clock.ReplaceAllString(l, ""), -1) {
					if k, _ := strconv.Atoi(f); k >= n/4 && k < n {
						t.Logf("killed at: %s", l)
						return true
					}
				}
			default:
				return indexBytes(dir) >= 256<<10
			}
		}
	}
	killed := false
	testsupport.WaitUntil(20*time.Second, func() bool {
		if halfway() {
			killed = cmd.Process.Signal(syscall.SIGKILL) == nil
			return true
		}
		select {
		case <-exited:
			return true
		default:
			return false
		}
	})
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("reindex did not end")
	}
	if ee, ok := werr.(*exec.ExitError); ok && ee.ExitCode() > 0 {
		t.Fatalf("reindex failed before the kill: exit %d\n%s", ee.ExitCode(), errText.String())
	}
	if !killed || werr == nil {
		t.Logf("reindex ended before the kill (%v)", werr)
	}
	t.Logf("index files after the kill: %d bytes", indexBytes(dir))

	p := start(t, dir)
	checkBatch(t, p, n)
}
