package e2e

import (
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// Two postoffice processes on one real PostgreSQL and one real S3 server
// (issue 18): what one node accepts the other serves at once, the POP3
// maildrop lock holds across them, IDLE and the web events stream of one
// see the other's changes, and a node killed or an engine stopped under
// load loses nothing that was acknowledged.

// visibleWithin is how long a change made on one node may take to reach
// another node's push channels (IDLE, SSE): a NOTIFY round trip.
const visibleWithin = 10 * time.Second

// loadMsg makes a message of about size octets, CRLF lines, none starting
// with a dot.
func loadMsg(subject string, size int) string {
	var b strings.Builder
	b.WriteString("From: load@test\r\nSubject: " + subject + "\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%06d %s\r\n", i, strings.Repeat("x", 68))
	}
	return b.String()
}

// fetchLiteral returns the literal of a FETCH response line as IMAPLine
// inlined it.
func fetchLiteral(t *testing.T, l string) string {
	t.Helper()
	m := regexp.MustCompile(`\{(\d+)\}\r\n`).FindStringSubmatchIndex(l)
	if m == nil {
		t.Fatalf("no literal in %.200q", l)
	}
	n, _ := strconv.Atoi(l[m[2]:m[3]])
	if m[1]+n > len(l) {
		t.Fatalf("short literal in %.200q", l)
	}
	return l[m[1] : m[1]+n]
}

// TestSharedCrossNodeDelivery: a message accepted over SMTP on node A is,
// as soon as the 250 arrived, served by node B over POP3 (STAT, UIDL,
// RETR byte for byte), IMAP (SELECT, FETCH) and the web API, with the
// same id everywhere.
func TestSharedCrossNodeDelivery(t *testing.T) {
	e := newSharedEngines(t)
	a, b := e.node("a"), e.node("b")
	crossDelivery(t, a, b)
	// A's metrics timed its PostgreSQL and S3 calls (issue 18, Operations).
	for _, engine := range []string{`engine="pg"`, `engine="s3"`} {
		if n := metricSum(t, a, "postoffice_store_request_duration_seconds_count", engine); n == 0 {
			t.Errorf("A's /metrics: no postoffice_store_request_duration_seconds_count{%s} after a delivery", engine)
		}
	}
}

// crossDelivery delivers to a and checks what b serves.
func crossDelivery(t *testing.T, a, b *proc) {
	t.Helper()
	msg := "From: alice@example.com\r\nSubject: cross-node\r\n\r\nHello from A\r\n..a line that starts with a dot\r\n"
	id := sendRaw(t, a.Addr("smtp"), "alice@example.com", []string{"user@example.com"}, msg)

	// POP3 on B, right after the 250: committed means visible.
	c := login(t, b.Addr("pop3"), "user", "pass")
	c.Send("STAT\r\n")
	stat := c.Expect("+OK *")
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	if got := c.MultilineText(); got != "1 "+id+"\r\n" {
		t.Fatalf("UIDL on B: %q, want 1 %s (STAT %q)", got, id, stat)
	}
	c.Send("RETR 1\r\n")
	c.Expect("+OK*")
	raw := c.MultilineText()
	if _, m := stripTrace(t, []byte(raw)); m != strings.Replace(msg, "\r\n..a", "\r\n.a", 1) {
		t.Fatalf("RETR on B: %q, want %q after the trace", m, msg)
	}
	if want := fmt.Sprintf("+OK 1 %d", len(raw)); stat != want {
		t.Errorf("STAT on B: %q, want %q (the RETR size)", stat, want)
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")

	// IMAP on B: SELECT counts it, FETCH gives the same octets.
	im := testsupport.Dial(t, b.Addr("imap"))
	im.IMAPLogin("user", "pass")
	r := im.IMAP("SELECT INBOX", "OK *")
	if !r.Has("* 1 EXISTS") {
		t.Fatalf("SELECT on B: %q, want * 1 EXISTS", r.Untagged)
	}
	r = im.IMAP("FETCH 1 (UID RFC822.SIZE BODY.PEEK[])", "OK *")
	if len(r.Untagged) != 1 {
		t.Fatalf("FETCH on B: %q", r.Untagged)
	}
	if got := fetchLiteral(t, r.Untagged[0]); got != raw {
		t.Errorf("IMAP BODY[] on B differs from POP3 RETR:\n%q\n%q", got, raw)
	}
	if !strings.Contains(r.Untagged[0], fmt.Sprintf("RFC822.SIZE %d", len(raw))) {
		t.Errorf("FETCH on B: %.200q, want RFC822.SIZE %d", r.Untagged[0], len(raw))
	}
	im.IMAP("LOGOUT", "OK *")

	// The web API on B: listed with the same id, its raw source the same.
	w := newWebClient(t, b)
	list := webInbox(t, w)
	if len(list) != 1 || list[0].ID != id {
		t.Fatalf("web listing on B: %+v, want the one message %s", list, id)
	}
	resp, err := w.hc.Get(w.base + "/api/v1/mailboxes/user/messages/" + id + "/raw")
	if err != nil {
		t.Fatal(err)
	}
	src, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(src) != raw {
		t.Errorf("web raw on B: %d %v %q, want %q", resp.StatusCode, err, src, raw)
	}
}

// TestSharedPOP3LockAcrossNodes: a POP3 session on A holds the maildrop,
// so a login on B is refused with [IN-USE] (RFC 2449 §8.1.1, RFC 1939
// §8); A's QUIT frees it for B at once; a node killed while holding it
// frees it when its lease expires, without anyone's help.
func TestSharedPOP3LockAcrossNodes(t *testing.T) {
	e := newSharedEngines(t)
	a, b := e.node("a"), e.node("b")
	sendRaw(t, a.Addr("smtp"), "alice@example.com", []string{"user@example.com"}, "Subject: lock\r\n\r\nx\r\n")

	tryLogin := func(p *proc) (string, *testsupport.Conn) {
		c := testsupport.Dial(t, p.Addr("pop3"))
		c.Expect("+OK*")
		c.Send("USER user\r\nPASS pass\r\n")
		c.Expect("+OK*")
		return c.Line(), c
	}
	holder := login(t, a.Addr("pop3"), "user", "pass")
	if l, c := tryLogin(b); !strings.HasPrefix(l, "-ERR [IN-USE]") {
		t.Fatalf("POP3 login on B while A holds the maildrop: %q, want -ERR [IN-USE]", l)
	} else {
		c.Close()
	}
	holder.Send("QUIT\r\n")
	holder.Expect("+OK*")
	l, c := tryLogin(b)
	if !strings.HasPrefix(l, "+OK") {
		t.Fatalf("POP3 login on B after A's QUIT: %q", l)
	}
	if l, c2 := tryLogin(a); !strings.HasPrefix(l, "-ERR [IN-USE]") {
		t.Fatalf("POP3 login on A while B holds the maildrop: %q, want -ERR [IN-USE]", l)
	} else {
		c2.Close()
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")

	// A takes it again and dies holding it.
	holder = login(t, a.Addr("pop3"), "user", "pass")
	holder.Send("STAT\r\n")
	holder.Expect("+OK 1 *")
	killed := time.Now()
	a.stop(syscall.SIGKILL)
	var first string
	var got bool
	for deadline := killed.Add(3 * time.Minute); time.Now().Before(deadline); {
		l, c := tryLogin(b)
		if first == "" {
			first = l
		}
		if strings.HasPrefix(l, "+OK") {
			got = true
			c.Send("STAT\r\n")
			c.Expect("+OK 1 *")
			c.Send("QUIT\r\n")
			c.Expect("+OK*")
			break
		}
		c.Close()
		if !strings.HasPrefix(l, "-ERR [IN-USE]") {
			t.Fatalf("POP3 login on B after A's kill: %q, want +OK or -ERR [IN-USE]", l)
		}
		time.Sleep(200 * time.Millisecond) // polling the lease's expiry
	}
	if !got {
		t.Fatalf("the maildrop held by a killed node was not free within 3 min (first login after the kill: %q)", first)
	}
	t.Logf("lease of a killed node: B logged in %v after the SIGKILL (first attempt: %q)", time.Since(killed).Round(100*time.Millisecond), first)
}

// TestSharedIMAPIdleAcrossNodes: an IDLE session on B (RFC 2177) sees an
// EXISTS for a message accepted on A, a FETCH FLAGS for A's STORE \Seen,
// and an EXPUNGE for A's EXPUNGE.
func TestSharedIMAPIdleAcrossNodes(t *testing.T) {
	e := newSharedEngines(t)
	idleAcross(t, e.node("a"), e.node("b"))
}

// idleAcross checks what an IDLE session on b sees of changes made on a.
func idleAcross(t *testing.T, a, b *proc) {
	t.Helper()
	idle := imapIdle(t, b.Addr("imap"))

	sendRaw(t, a.Addr("smtp"), "alice@example.com", []string{"user@example.com"}, "Subject: idle\r\n\r\nhello\r\n")
	expectUntagged(t, idle, "* 1 EXISTS", visibleWithin)

	im := testsupport.Dial(t, a.Addr("imap"))
	im.IMAPLogin("user", "pass")
	im.IMAP("SELECT INBOX", "OK *")
	im.IMAP(`STORE 1 +FLAGS (\Seen)`, "OK *")
	expectUntagged(t, idle, `* 1 FETCH (*\Seen*)`, visibleWithin)

	im.IMAP(`STORE 1 +FLAGS.SILENT (\Deleted)`, "OK *")
	im.IMAP("EXPUNGE", "OK *")
	expectUntagged(t, idle, "* 1 EXPUNGE", visibleWithin)

	idle.Send("DONE\r\n")
	if l, seen := expectUntagged(t, idle, "idle *", visibleWithin); !strings.HasPrefix(l, "idle OK") {
		t.Fatalf("IDLE ended with %q (after %q)", l, seen)
	}
	r := idle.IMAP("STATUS INBOX (MESSAGES)", "OK *")
	if !r.Has("* STATUS INBOX (MESSAGES 0)") {
		t.Errorf("STATUS on B after A's expunge: %q", r.Untagged)
	}
}

// TestSharedSSEAcrossNodes: the web API's events stream on B reports an
// arrival accepted on A, with its id.
func TestSharedSSEAcrossNodes(t *testing.T) {
	e := newSharedEngines(t)
	sseAcross(t, e.node("a"), e.node("b"))
}

// sseAcross checks that b's events stream reports an arrival on a.
func sseAcross(t *testing.T, a, b *proc) {
	t.Helper()
	events := openEvents(t, newWebClient(t, b))
	id := sendRaw(t, a.Addr("smtp"), "alice@example.com", []string{"user@example.com"}, "Subject: sse\r\n\r\nhello\r\n")
	timeout := time.After(visibleWithin)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("events stream on B ended")
			}
			if ev.name == "arrived" && strings.Contains(ev.data, `"`+id+`"`) {
				if !strings.Contains(ev.data, `"mailbox":"user"`) {
					t.Errorf("arrived event %q: want mailbox user", ev.data)
				}
				return
			}
		case <-timeout:
			t.Fatalf("no arrived event for %s on B within %v", id, visibleWithin)
		}
	}
}

// loader delivers messages over several concurrent SMTP sessions, one
// message per session, until stopped, and records what each got.
type loader struct {
	mu      sync.Mutex
	acked   map[string]string // queue id -> message sent
	temp    int               // 4xx answers (451 4.3.0 expected)
	neterr  int               // connection errors
	bad     []string          // anything else: a failure of the server
	replies map[string]int    // each distinct 4xx line, counted
	size    int
	n       atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startLoad runs workers sessions in a loop against addrs (in turn), each
// message of size octets.
func startLoad(addrs []string, workers, size int) *loader {
	l := &loader{acked: map[string]string{}, replies: map[string]int{}, size: size, stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for k := 0; ; k++ {
				select {
				case <-l.stop:
					return
				default:
				}
				i := l.n.Add(1)
				data := loadMsg(fmt.Sprintf("load %d", i), size)
				res := sharedSend(addrs[(w+k)%len(addrs)], data)
				l.mu.Lock()
				ok := false
				switch {
				case res.id != "" && res.err == nil:
					l.acked[res.id] = data
					ok = true
				case strings.HasPrefix(res.reply, "4"):
					l.temp++
					l.replies[res.reply]++
				case res.reply == "" && res.err != nil:
					l.neterr++
				default:
					l.bad = append(l.bad, fmt.Sprintf("reply %q, error %v", res.reply, res.err))
				}
				l.mu.Unlock()
				if !ok {
					time.Sleep(50 * time.Millisecond) // back off while the server refuses
				}
			}
		}()
	}
	return l
}

func (l *loader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// end stops the load and waits for the sessions in flight.
func (l *loader) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *loader) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d acknowledged, %d temporary failures %v, %d connection errors, %d other", len(l.acked), l.temp, l.replies, l.neterr, len(l.bad))
}

// checkAcked checks that every acknowledged message is in the maildrop
// served by p, byte for byte, and that every message there RETRs whole.
func checkAcked(t *testing.T, l *loader, p *proc) map[string]string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bad {
		t.Errorf("a delivery got an answer that is neither 250 nor 4xx: %s", b)
	}
	got := pop3Messages(t, p.Addr("pop3"))
	missing := 0
	for id, data := range l.acked {
		raw, ok := got[id]
		if !ok {
			missing++
			if missing <= 5 {
				t.Errorf("message %s got a 250 and is missing", id)
			}
			continue
		}
		if _, m := stripTrace(t, []byte(raw)); m != data {
			t.Errorf("message %s: %d octets after the trace, want the %d sent", id, len(m), len(data))
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged messages missing", missing, len(l.acked))
	}
	for id, raw := range got {
		if _, ok := l.acked[id]; ok {
			continue
		}
		// Committed but not acknowledged (the answer was lost): it must
		// still be a whole message.
		_, m := stripTrace(t, []byte(raw))
		if m == loadMsg("after", 512) {
			continue // a probe of the test's own, sent after an outage
		}
		if !strings.HasPrefix(m, "From: load@test\r\nSubject: load ") {
			t.Errorf("unacknowledged message %s is not one of ours: %.80q", id, m)
			continue
		}
		var n int
		fmt.Sscanf(m[len("From: load@test\r\nSubject: load "):], "%d", &n)
		if m != loadMsg(fmt.Sprintf("load %d", n), l.size) {
			t.Errorf("unacknowledged message %s (load %d) is not whole: %d octets", id, n, len(m))
		}
	}
	return got
}

// checkBlobs checks that every message row's blob is an object of the
// bucket, and returns the objects no blob row names (orphans).
func checkBlobs(t *testing.T, e *sharedEngines) (orphans []string) {
	t.Helper()
	blobs, referenced := e.blobKeys(e.db())
	objects := e.objects()
	for k := range referenced {
		if !blobs[k] {
			t.Errorf("a message refers to blob %s without a blob row", k)
		}
		if !objects[k] {
			t.Errorf("a message refers to blob %s, not in the bucket", k)
		}
	}
	for k := range blobs {
		if !objects[k] {
			t.Errorf("blob row %s has no object", k)
		}
	}
	for k := range objects {
		if !blobs[k] && strings.HasPrefix(k, "msg/") { // s3blob.NewKey's keys
			orphans = append(orphans, k)
		}
	}
	return orphans
}

var sweepFlagRe = regexp.MustCompile(`--[a-z0-9-]*(sweep|orphan)[a-z0-9-]*`)

// TestSharedKillNodeDuringDeliveries: node A is killed with SIGKILL while
// four clients deliver 64 KB messages to it. Every message that got a
// 250 is served whole by node B, no message row lacks its object, and
// the objects the kill left without a row are swept by a node started
// with a short sweep grace (together with one planted by the test).
func TestSharedKillNodeDuringDeliveries(t *testing.T) {
	e := newSharedEngines(t)
	a, b := e.node("a"), e.node("b")
	l := startLoad([]string{a.Addr("smtp")}, 4, 64<<10)
	if !testsupport.WaitUntil(60*time.Second, func() bool { return l.count() >= 40 }) {
		l.end()
		t.Fatalf("load on A did not reach 40 deliveries: %s", l.summary())
	}
	a.stop(syscall.SIGKILL)
	l.end()
	t.Logf("load on A: %s", l.summary())
	checkAcked(t, l, b)
	orphans := checkBlobs(t, e)
	t.Logf("objects without a blob row after the kill: %d", len(orphans))

	var grace, every string
	for _, f := range sweepFlagRe.FindAllString(wiring.help, -1) {
		switch {
		case strings.Contains(f, "grace") && grace == "":
			grace = f
		case (strings.Contains(f, "interval") || strings.Contains(f, "every")) && every == "":
			every = f
		}
	}
	if grace == "" {
		t.Fatalf("postoffice serve exposes no sweep grace setting (no --*sweep*grace* or --*orphan*grace* flag): the sweeping of the %d orphans cannot be tested", len(orphans))
	}
	planted := "msg/orphan-planted-by-test.0123456789abcdef"
	e.putObject(planted, "orphan")
	// The planted object must be older than the grace (1 s) when the new
	// node looks: S3 dates objects to the second.
	if wait := time.Until(e.modified(planted).Add(2 * time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	args := []string{grace, "1s"}
	if every != "" {
		args = append(args, every, "1s")
	}
	c := e.node("c", args...)
	swept := time.Now()
	if !testsupport.WaitUntil(3*time.Minute, func() bool { return len(checkBlobs(t, e)) == 0 }) {
		t.Fatalf("orphans left 3 min after starting a node with %q: %q", args, checkBlobs(t, e))
	}
	t.Logf("orphans swept %v after starting a node with %q", time.Since(swept).Round(100*time.Millisecond), args)
	// Nothing a row refers to was swept: everything still RETRs whole.
	checkAcked(t, l, c)
}

// outage runs the load on both nodes, stops an engine with stop, checks
// what clients get meanwhile with during, starts it again and checks
// that both nodes serve again without a restart and that every
// acknowledged message is there.
func outage(t *testing.T, e *sharedEngines, stop, startAgain func(), during func(a, b *proc)) {
	a, b := e.node("a"), e.node("b")
	l := startLoad([]string{a.Addr("smtp"), b.Addr("smtp")}, 4, 2<<10)
	if !testsupport.WaitUntil(60*time.Second, func() bool { return l.count() >= 20 }) {
		l.end()
		t.Fatalf("load did not reach 20 deliveries: %s", l.summary())
	}
	stop()
	stopped := time.Now()

	// SMTP: a temporary failure, within the store timeout and its retry.
	var last smtpResult
	if !testsupport.WaitUntil(30*time.Second, func() bool {
		last = sharedSend(b.Addr("smtp"), loadMsg("probe", 512))
		return strings.HasPrefix(last.reply, "451 4.3.0")
	}) {
		t.Errorf("SMTP on B with the engine stopped: %q (%v), want 451 4.3.0", last.reply, last.err)
	} else {
		t.Logf("first 451 4.3.0 %v after the stop", time.Since(stopped).Round(10*time.Millisecond))
	}
	// /readyz: 503 with a reason.
	var code int
	var checks map[string]string
	if !testsupport.WaitUntil(30*time.Second, func() bool {
		code, checks, _ = readyz(a)
		return code == 503
	}) {
		t.Errorf("/readyz on A with the engine stopped: %d %v, want 503", code, checks)
	} else {
		reason := false
		for k, v := range checks {
			if v != "ok" && v != "" {
				reason = true
				t.Logf("/readyz on A: 503, %s: %s", k, v)
			}
		}
		if !reason {
			t.Errorf("/readyz on A: 503 without a reason: %v", checks)
		}
	}
	during(a, b)

	startAgain()
	restarted := time.Now()
	// Both nodes deliver again, without a restart.
	for _, p := range []*proc{a, b} {
		if !testsupport.WaitUntil(60*time.Second, func() bool {
			last = sharedSend(p.Addr("smtp"), loadMsg("after", 512))
			return last.id != ""
		}) {
			t.Fatalf("SMTP after the engine came back: %q (%v)", last.reply, last.err)
		}
	}
	t.Logf("deliveries again %v after the start", time.Since(restarted).Round(10*time.Millisecond))
	if !testsupport.WaitUntil(30*time.Second, func() bool { code, checks, _ = readyz(b); return code == 200 }) {
		t.Errorf("/readyz on B after the engine came back: %d %v", code, checks)
	}
	// More load after the return, then the count.
	n := l.count()
	if !testsupport.WaitUntil(60*time.Second, func() bool { return l.count() >= n+20 }) {
		t.Errorf("load did not resume: %s", l.summary())
	}
	l.end()
	t.Logf("load: %s", l.summary())
	im := testsupport.Dial(t, a.Addr("imap"))
	im.IMAPLogin("user", "pass")
	im.IMAP("SELECT INBOX", "OK *")
	im.IMAP("LOGOUT", "OK *")
	checkAcked(t, l, b)
	checkBlobs(t, e)
}

// imapSelectDuringOutage logs in to p over IMAP and returns SELECT's
// tagged status.
func imapSelectDuringOutage(t *testing.T, p *proc) string {
	t.Helper()
	im := testsupport.Dial(t, p.Addr("imap"))
	defer im.Close()
	im.Expect("* OK *")
	if s := im.IMAPTag("l", "LOGIN user pass").Status; !strings.HasPrefix(s, "OK") {
		// A login that needs the store may fail the same way.
		t.Logf("IMAP LOGIN on %s during the outage: %q", p.Addr("imap"), s)
		return s
	}
	return im.IMAPTag("s", "SELECT INBOX").Status
}

// TestSharedPostgresStoppedUnderLoad: PostgreSQL stopped (an immediate
// shutdown, as a crash) while both nodes take deliveries: SMTP answers
// 451 4.3.0 (RFC 3463 §3.4: a temporary local failure), POP3 login
// -ERR [SYS/TEMP] (RFC 3206 §4), IMAP SELECT NO [UNAVAILABLE] (RFC 5530
// §3), /readyz 503 with the reason; started again, both nodes serve
// without a restart and every acknowledged message is there.
func TestSharedPostgresStoppedUnderLoad(t *testing.T) {
	e := newSharedEngines(t)
	outage(t, e, func() { e.pg.Stop(t) }, func() { e.pg.Start(t) }, func(a, b *proc) {
		c := testsupport.Dial(t, b.Addr("pop3"))
		c.Expect("+OK*")
		c.Send("USER user\r\nPASS pass\r\n")
		c.Expect("+OK*")
		if l := c.Line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
			t.Errorf("POP3 login on B with PostgreSQL stopped: %q, want -ERR [SYS/TEMP]", l)
		}
		c.Close()
		if s := imapSelectDuringOutage(t, a); !strings.HasPrefix(s, "NO [UNAVAILABLE]") {
			t.Errorf("IMAP SELECT on A with PostgreSQL stopped: %q, want NO [UNAVAILABLE]", s)
		}
	})
}

// TestSharedS3StoppedUnderLoad: the S3 server killed while both nodes take
// deliveries: SMTP answers 451 4.3.0 (no 250 without the object), a
// message body cannot be read (POP3 RETR -ERR [SYS/TEMP], IMAP FETCH
// BODY[] NO [UNAVAILABLE]) while what PostgreSQL holds still answers,
// /readyz 503 with the reason; started again, both nodes serve without a
// restart and every acknowledged message is there.
func TestSharedS3StoppedUnderLoad(t *testing.T) {
	e := newSharedEngines(t)
	outage(t, e, func() { e.s3.Stop(t) }, func() { e.s3.Start(t) }, func(a, b *proc) {
		c := testsupport.Dial(t, b.Addr("pop3"))
		c.Expect("+OK*")
		c.Send("USER user\r\nPASS pass\r\n")
		c.Expect("+OK*")
		l := c.Line()
		switch {
		case strings.HasPrefix(l, "+OK"):
			c.Send("RETR 1\r\n")
			if l := c.Line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
				t.Errorf("POP3 RETR on B with S3 stopped: %q, want -ERR [SYS/TEMP]", l)
			}
			c.Send("QUIT\r\n")
			c.Line()
		case !strings.HasPrefix(l, "-ERR [SYS/TEMP]"):
			t.Errorf("POP3 login on B with S3 stopped: %q, want +OK or -ERR [SYS/TEMP]", l)
		}
		c.Close()
		im := testsupport.Dial(t, a.Addr("imap"))
		defer im.Close()
		im.IMAPLogin("user", "pass")
		if s := im.IMAPTag("s", "SELECT INBOX").Status; !strings.HasPrefix(s, "OK") {
			t.Errorf("IMAP SELECT on A with S3 stopped: %q, want OK (PostgreSQL is up)", s)
			return
		}
		if s := im.IMAPTag("f", "FETCH 2 BODY.PEEK[]").Status; !strings.HasPrefix(s, "NO [UNAVAILABLE]") {
			t.Errorf("IMAP FETCH BODY[] on A with S3 stopped: %q, want NO [UNAVAILABLE]", s)
		}
	})
}
