package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// Crash tests of IMAP: clients on other goroutines APPEND, MOVE (INBOX to
// Archive and back) and EXPUNGE in loops while the server is killed with
// SIGKILL; after each restart on the same Maildir a fresh session checks
// what the clients were told against what is there.

var crashFolders = []string{"INBOX", "Archive"}

// crashLedger is what the clients were told and did, and the checks that
// use it. Every method takes mu.
type crashLedger struct {
	mu         sync.Mutex
	validity   map[string]uint32            // folder -> the first UIDVALIDITY seen
	seen       map[string]map[uint32]string // folder -> UID -> marker, every UID a client saw
	floor      map[string]uint32            // folder -> UIDs assigned from now on must be above
	attempted  map[string]bool              // markers an APPEND was sent for
	acked      map[string]bool              // markers whose APPEND got APPENDUID
	maybeGone  map[string]bool              // markers an EXPUNGE was sent for
	expunged   map[string]map[uint32]bool   // folder -> UIDs an acknowledged EXPUNGE removed
	moves      map[string]crashMove         // marker -> its last MOVE
	inBoth     map[string]bool              // markers a cut-off MOVE left in both folders
	appends    atomic.Int64                 // acknowledged, this round
	moved      atomic.Int64
	expunges   atomic.Int64
	inUse      atomic.Int64 // NO [INUSE] answers, all rounds
	staleLocks int          // dotlocks the kills left
	totals     [3]int64
	errs       []string
}

// crashMove is one MOVE of a marker, and whether it got its OK.
type crashMove struct {
	from, to string
	acked    bool
}

func newCrashLedger() *crashLedger {
	l := &crashLedger{
		validity: map[string]uint32{}, seen: map[string]map[uint32]string{}, floor: map[string]uint32{},
		attempted: map[string]bool{}, acked: map[string]bool{}, maybeGone: map[string]bool{},
		expunged: map[string]map[uint32]bool{}, moves: map[string]crashMove{}, inBoth: map[string]bool{},
	}
	for _, f := range crashFolders {
		l.seen[f] = map[uint32]string{}
		l.expunged[f] = map[uint32]bool{}
	}
	return l
}

func (l *crashLedger) errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errorfLocked(format, args...)
}

func (l *crashLedger) errorfLocked(format string, args ...any) {
	if len(l.errs) < 50 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// refused records a NO to a MOVE or EXPUNGE: an error (no POP3 session
// holds the maildrop here, and IMAP sessions wait for each other's
// moment with the lock: TestIMAPConcurrentInboxChanges).
func (l *crashLedger) refused(cmd, status string) {
	l.errorf("%s: %q", cmd, status)
}

// checkValidity holds every UIDVALIDITY of folder to the first one seen:
// the uidlist is never removed here, so it may never change.
func (l *crashLedger) checkValidity(folder string, v uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if first, ok := l.validity[folder]; !ok {
		l.validity[folder] = v
	} else if v != first {
		l.errorfLocked("%s: UIDVALIDITY %d, was %d", folder, v, first)
	}
}

// observe records that UID uid of folder is marker. A UID is one message
// for ever (RFC 9051 §2.3.1.1): seen as another marker before, it was
// reused. assigned says that the server has just given the UID (APPENDUID,
// COPYUID): it must be above every UID seen before the last restart.
func (l *crashLedger) observe(folder string, uid uint32, marker string, assigned bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if prev, ok := l.seen[folder][uid]; ok && prev != marker {
		l.errorfLocked("%s UID %d reused: was %s, now %s", folder, uid, prev, marker)
	}
	if assigned && uid <= l.floor[folder] {
		l.errorfLocked("%s UID %d (%s) assigned after a restart, not above %d seen before", folder, uid, marker, l.floor[folder])
	}
	l.seen[folder][uid] = marker
}

// crashSession is an IMAP client for the worker goroutines: it never
// fails the test (the server dies under it); a broken connection ends
// the worker.
type crashSession struct {
	c   *testsupport.Conn
	tag int
}

func dialCrash(t *testing.T, addr string) (*crashSession, error) {
	nc, err := net.DialTimeout("tcp", addr, testsupport.Timeout)
	if err != nil {
		return nil, err
	}
	s := &crashSession{c: testsupport.NewConn(t, nc)}
	if _, err := s.c.IMAPLine(); err != nil {
		return nil, err
	}
	if _, st, err := s.do(`LOGIN "user" "pass"`); err != nil || !strings.HasPrefix(st, "OK") {
		return nil, fmt.Errorf("login: %q %v", st, err)
	}
	return s, nil
}

// do sends one command and returns the untagged lines and the tagged
// status.
func (s *crashSession) do(cmd string) ([]string, string, error) {
	s.tag++
	tag := "w" + strconv.Itoa(s.tag)
	s.c.SetWriteDeadline(time.Now().Add(testsupport.Timeout))
	if _, err := io.WriteString(s.c.Conn, tag+" "+cmd+"\r\n"); err != nil {
		return nil, "", err
	}
	var untagged []string
	for {
		l, err := s.c.IMAPLine()
		if err != nil {
			return nil, "", err
		}
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest, nil
		}
		untagged = append(untagged, l)
	}
}

var (
	appendUIDRe = regexp.MustCompile(`^OK \[APPENDUID (\d+) (\d+)\]`)
	copyUIDRe   = regexp.MustCompile(`\[COPYUID (\d+) (\d+) (\d+)\]`)
	searchRe    = regexp.MustCompile(`^\* SEARCH((?: \d+)*)$`)
	expungeRe   = regexp.MustCompile(`^\* \d+ EXPUNGE$`)
)

func atoi32(s string) uint32 {
	n, _ := strconv.ParseUint(s, 10, 32)
	return uint32(n)
}

// selectFolder SELECTs folder and checks its UIDVALIDITY.
func (s *crashSession) selectFolder(l *crashLedger, folder string) error {
	u, st, err := s.do("SELECT " + folder)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(st, "OK") {
		l.errorf("SELECT %s: %q", folder, st)
		return fmt.Errorf("select failed")
	}
	for _, line := range u {
		if m := validityRe.FindStringSubmatch(line); m != nil {
			l.checkValidity(folder, atoi32(m[1]))
		}
	}
	return nil
}

// pick returns a random UID of the selected folder and its marker, or 0
// when the folder is empty, the message went away meanwhile or its marker
// number's parity is not parity. The mover takes even markers, the
// expunger odd ones, so that the ledger knows which of the two removed a
// message (a MOVE of a message expunged meanwhile moves nothing:
// TestIMAPCopyMoveOfVanishedUID).
func (s *crashSession) pick(l *crashLedger, folder string, parity int) (uint32, string, error) {
	u, st, err := s.do("UID SEARCH ALL")
	if err != nil || !strings.HasPrefix(st, "OK") {
		return 0, "", err
	}
	var uids []string
	for _, line := range u {
		if m := searchRe.FindStringSubmatch(line); m != nil {
			uids = strings.Fields(m[1])
		}
	}
	if len(uids) == 0 {
		return 0, "", nil
	}
	uid := uids[rand.IntN(len(uids))]
	u, st, err = s.do("UID FETCH " + uid + " (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
	if err != nil || !strings.HasPrefix(st, "OK") {
		return 0, "", err
	}
	for _, line := range u {
		m := fetchRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		items, err := parseFetchItems(m[2])
		if err != nil || items["UID"] != uid {
			continue
		}
		marker := headerMarker(items)
		if marker == "" {
			l.errorf("%s UID %s: no Message-ID in %q", folder, uid, line)
			return 0, "", nil
		}
		l.observe(folder, atoi32(uid), marker, false)
		if markerNumber(marker)%2 != parity {
			return 0, "", nil
		}
		return atoi32(uid), marker, nil
	}
	return 0, "", nil
}

// headerMarker returns the Message-ID of a FETCH of
// BODY[HEADER.FIELDS (MESSAGE-ID)].
func headerMarker(items map[string]string) string {
	for k, v := range items {
		if strings.HasPrefix(k, "BODY[") {
			if m := messageIDRe.FindStringSubmatch(v); m != nil {
				return m[1]
			}
		}
	}
	return ""
}

var crashMarkers atomic.Int64

// markerNumber is n of a marker "<cn@crash>" (-1 for others).
func markerNumber(marker string) int {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(marker, "<c"), "@crash>"))
	if err != nil {
		return -1
	}
	return n
}

// appendLoop APPENDs to folder until the connection breaks.
func appendLoop(t *testing.T, addr, folder string, l *crashLedger) {
	s, err := dialCrash(t, addr)
	if err != nil {
		return
	}
	var last uint32
	for {
		marker := fmt.Sprintf("<c%d@crash>", crashMarkers.Add(1))
		msg := fmt.Sprintf("Message-ID: %s\r\nSubject: crash\r\n\r\n%s", marker, strings.Repeat("some body text of a crash test message\r\n", rand.IntN(200)+1))
		flags := ""
		if rand.IntN(2) == 0 {
			flags = `\Seen`
		}
		l.mu.Lock()
		l.attempted[marker] = true
		l.mu.Unlock()
		_, st, err := s.do(fmt.Sprintf("APPEND %s (%s) {%d+}\r\n%s", folder, flags, len(msg), msg))
		if err != nil {
			return
		}
		m := appendUIDRe.FindStringSubmatch(st)
		if m == nil {
			l.errorf("APPEND to %s: %q", folder, st)
			return
		}
		uid := atoi32(m[2])
		l.checkValidity(folder, atoi32(m[1]))
		l.observe(folder, uid, marker, true)
		if uid <= last {
			l.errorf("APPEND to %s: UID %d after %d on one connection", folder, uid, last)
		}
		last = uid
		l.mu.Lock()
		l.acked[marker] = true
		l.mu.Unlock()
		l.appends.Add(1)
	}
}

// moveLoop moves a random message from INBOX to Archive, then one back,
// until the connection breaks. It is the only mover: a marker is only in
// both folders when a MOVE was cut off (and then it is moved no more).
func moveLoop(t *testing.T, addr string, l *crashLedger) {
	s, err := dialCrash(t, addr)
	if err != nil {
		return
	}
	for i := 0; ; i++ {
		from, to := crashFolders[i%2], crashFolders[(i+1)%2]
		if s.selectFolder(l, from) != nil {
			return
		}
		uid, marker, err := s.pick(l, from, 0)
		if err != nil {
			return
		}
		l.mu.Lock()
		skip := uid == 0 || l.inBoth[marker]
		if !skip {
			l.moves[marker] = crashMove{from: from, to: to}
		}
		l.mu.Unlock()
		if skip {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		u, st, err := s.do(fmt.Sprintf("UID MOVE %d %s", uid, to))
		if err != nil {
			return
		}
		if !strings.HasPrefix(st, "OK") {
			l.refused(fmt.Sprintf("UID MOVE %d %s", uid, to), st)
			continue
		}
		// RFC 6851 §4.3: COPYUID in an untagged OK (or in the tagged OK).
		var m []string
		for _, line := range append(u, st) {
			if mm := copyUIDRe.FindStringSubmatch(line); mm != nil {
				m = mm
			}
		}
		if m == nil {
			continue // gone meanwhile: nothing moved
		}
		if atoi32(m[2]) != uid {
			l.errorf("UID MOVE %d: COPYUID names source %s", uid, m[2])
		}
		l.checkValidity(to, atoi32(m[1]))
		l.observe(to, atoi32(m[3]), marker, true)
		l.mu.Lock()
		l.moves[marker] = crashMove{from: from, to: to, acked: true}
		l.mu.Unlock()
		l.moved.Add(1)
	}
}

// expungeLoop flags a random message \Deleted and expunges it by UID,
// in INBOX and in Archive in turn, until the connection breaks.
func expungeLoop(t *testing.T, addr string, l *crashLedger) {
	s, err := dialCrash(t, addr)
	if err != nil {
		return
	}
	for i := 0; ; i++ {
		folder := crashFolders[i%2]
		if s.selectFolder(l, folder) != nil {
			return
		}
		uid, marker, err := s.pick(l, folder, 1)
		if err != nil {
			return
		}
		if uid == 0 {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		l.maybeGone[marker] = true
		l.mu.Unlock()
		if _, st, err := s.do(fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)); err != nil {
			return
		} else if !strings.HasPrefix(st, "OK") {
			l.errorf("UID STORE %d: %q", uid, st)
			continue
		}
		u, st, err := s.do(fmt.Sprintf("UID EXPUNGE %d", uid))
		if err != nil {
			return
		}
		if !strings.HasPrefix(st, "OK") {
			l.refused(fmt.Sprintf("UID EXPUNGE %d", uid), st)
			continue
		}
		if slices.ContainsFunc(u, expungeRe.MatchString) {
			l.mu.Lock()
			l.expunged[folder][uid] = true
			l.mu.Unlock()
			l.expunges.Add(1)
		}
	}
}

// verifyCrash looks at both folders in a fresh session of p and checks
// them against the ledger: UIDs and UIDVALIDITY kept, each marker at most
// once a folder, every acknowledged APPEND present unless an EXPUNGE was
// sent for it, an acknowledged MOVE's source gone and its target there,
// an acknowledged EXPUNGE's UID gone. It then sets the floor above which
// the UIDs given from now on must be.
func verifyCrash(t *testing.T, p *proc, l *crashLedger) {
	t.Helper()
	c := imapDial(t, p)
	c.IMAP(`LIST "" "*"`, "OK *")          // creates Archive at the first run
	present := map[string]map[string]int{} // marker -> folder -> count
	for _, folder := range crashFolders {
		r := c.IMAP("EXAMINE "+folder, "OK *")
		exists := -1
		for _, line := range r.Untagged {
			if m := validityRe.FindStringSubmatch(line); m != nil {
				l.checkValidity(folder, atoi32(m[1]))
			}
			if m := existsRe.FindStringSubmatch(line); m != nil {
				exists, _ = strconv.Atoi(m[1])
			}
		}
		if exists > 0 {
			msgs := fetchAll(t, c, "1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
			if len(msgs) != exists {
				t.Errorf("%s: %d EXISTS, %d messages fetched", folder, exists, len(msgs))
			}
			for uid, items := range msgs {
				marker := headerMarker(items)
				if marker == "" {
					t.Errorf("%s UID %d: no Message-ID: %q", folder, uid, items)
					continue
				}
				l.observe(folder, uid, marker, false)
				if present[marker] == nil {
					present[marker] = map[string]int{}
				}
				present[marker][folder]++
				l.mu.Lock()
				if l.expunged[folder][uid] {
					l.errorfLocked("%s UID %d (%s) is back after an acknowledged EXPUNGE", folder, uid, marker)
				}
				l.mu.Unlock()
			}
		}
		c.IMAP("UNSELECT", "OK *")
	}
	c.IMAP("LOGOUT", "OK *")

	l.mu.Lock()
	defer l.mu.Unlock()
	for marker, in := range present {
		if !l.attempted[marker] {
			l.errorfLocked("%s is in %v but was never appended", marker, in)
		}
		for folder, n := range in {
			if n > 1 {
				l.errorfLocked("%s is %d times in %s", marker, n, folder)
			}
		}
		if len(in) == 2 {
			mv, ok := l.moves[marker]
			if !ok || mv.acked {
				l.errorfLocked("%s is in both folders; its last MOVE %+v", marker, mv)
			}
			l.inBoth[marker] = true
		}
	}
	for marker := range l.acked {
		if l.maybeGone[marker] {
			continue
		}
		if len(present[marker]) == 0 {
			l.errorfLocked("acknowledged APPEND of %s lost", marker)
		}
		if mv, ok := l.moves[marker]; ok && mv.acked {
			if present[marker][mv.to] == 0 {
				l.errorfLocked("%s not in %s after an acknowledged MOVE", marker, mv.to)
			}
		}
	}
	for marker, mv := range l.moves {
		if mv.acked && present[marker][mv.from] > 0 {
			l.errorfLocked("%s still in %s after an acknowledged MOVE to %s", marker, mv.from, mv.to)
		}
	}
	for _, folder := range crashFolders {
		for uid := range l.seen[folder] {
			l.floor[folder] = max(l.floor[folder], uid)
		}
	}
}

// SIGKILL during concurrent APPEND, MOVE and EXPUNGE loops, a few rounds
// on one Maildir: no UID reused or given again after a restart, no marker
// twice in one folder, no acknowledged APPEND, MOVE or EXPUNGE undone,
// UIDVALIDITY unchanged.
func TestIMAPCrashAppendMoveExpunge(t *testing.T) {
	dir := t.TempDir() + "/mailbox"
	l := newCrashLedger()
	const rounds = 4
	for round := 0; round < rounds; round++ {
		p := start(t, dir)
		verifyCrash(t, p, l)
		addr := p.Addr("imap")
		l.appends.Store(0)
		l.moved.Store(0)
		l.expunges.Store(0)
		var wg sync.WaitGroup
		for _, w := range []func(){
			func() { appendLoop(t, addr, "INBOX", l) },
			func() { appendLoop(t, addr, "Archive", l) },
			func() { moveLoop(t, addr, l) },
			func() { expungeLoop(t, addr, l) },
		} {
			wg.Add(1)
			go func() { defer wg.Done(); w() }()
		}
		// Kill once every loop is under way, a little after 300 ms.
		time.Sleep(300 * time.Millisecond)
		testsupport.WaitUntil(20*time.Second, func() bool {
			return l.appends.Load() >= 10 && l.moved.Load() >= 3 && l.expunges.Load() >= 3
		})
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		wg.Wait()
		// A kill during a uidlist write leaves its dotlock: the next
		// process removes it once it is orphaned (no flock, 3 s old;
		// TestIMAPKilledUIDListLock), with no operator's help.
		l.staleLocks += countUIDListLocks(t, dir)
		l.totals[0] += l.appends.Load()
		l.totals[1] += l.moved.Load()
		l.totals[2] += l.expunges.Load()
	}
	// After the last kill: the checks, then new UIDs above all before.
	p := start(t, dir)
	verifyCrash(t, p, l)
	c := imapDial(t, p)
	for i := 0; i < 3; i++ {
		for _, folder := range crashFolders {
			marker := fmt.Sprintf("<after%d.%s@crash>", i, folder)
			l.mu.Lock()
			l.attempted[marker] = true
			l.mu.Unlock()
			msg := "Message-ID: " + marker + "\r\n\r\nafter the crashes\r\n"
			st := appendLiteral(t, c, folder, "", msg)
			m := appendUIDRe.FindStringSubmatch(st)
			if m == nil {
				t.Fatalf("APPEND: %q", st)
			}
			l.checkValidity(folder, atoi32(m[1]))
			l.observe(folder, atoi32(m[2]), marker, true)
		}
	}
	c.IMAP("LOGOUT", "OK *")
	verifyCrash(t, p, l)

	for _, e := range l.errs {
		t.Error(e)
	}
	if l.totals[0] == 0 || l.totals[1] == 0 || l.totals[2] == 0 {
		t.Fatalf("the loops did not run: %d APPENDs, %d MOVEs, %d EXPUNGEs acknowledged", l.totals[0], l.totals[1], l.totals[2])
	}
	t.Logf("%d rounds: %d APPENDs, %d MOVEs, %d EXPUNGEs acknowledged, %d refused with NO [INUSE]; %d markers cut off in both folders; %d uidlist locks left",
		rounds, l.totals[0], l.totals[1], l.totals[2], l.inUse.Load(), len(l.inBoth), l.staleLocks)
}

// uidListLocks returns the dovecot-uidlist dotlocks of user's folders.
func uidListLocks(t *testing.T, dir string) []string {
	requireMaildir(t, "looks for dovecot-uidlist locks on disk")
	t.Helper()
	a, err := filepath.Glob(filepath.Join(dir, "user", "dovecot-uidlist.lock"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := filepath.Glob(filepath.Join(dir, "user", ".*", "dovecot-uidlist.lock"))
	return append(a, b...)
}

// removeUIDListLocks removes them and returns how many there were.
func countUIDListLocks(t *testing.T, dir string) int {
	t.Helper()
	return len(uidListLocks(t, dir))
}

// imapWithin sends "tag cmd" on c and reads the response lines (no
// literals) up to the tagged one, each within d; it returns the lines read
// and an error when the tagged line did not come.
func imapWithin(c *testsupport.Conn, tag, cmd string, d time.Duration) ([]string, error) {
	c.SetWriteDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c.Conn, tag+" "+cmd+"\r\n"); err != nil {
		return nil, err
	}
	var lines []string
	for {
		c.Conn.SetReadDeadline(time.Now().Add(d))
		l, err := c.R.ReadString('\n')
		if err != nil {
			return append(lines, l), err
		}
		lines = append(lines, strings.TrimSuffix(l, "\r\n"))
		if strings.HasPrefix(l, tag+" ") {
			return lines, nil
		}
	}
}

// A kill -9 during a uidlist write leaves dovecot-uidlist.lock behind (the
// write goes into the lock file, which is renamed over the list). The
// process that held it is dead; the restarted server must still open the
// folder, not wait for the two minutes after which a lock counts as stale.
// The kills are repeated until one leaves a lock (skipped if none does).
func TestIMAPKilledUIDListLock(t *testing.T) {
	requireMaildir(t, "leaves a dovecot-uidlist lock on disk")
	dir := t.TempDir() + "/mailbox"
	l := newCrashLedger()
	var locks []string
	for round := 0; round < 20 && len(locks) == 0; round++ {
		p := start(t, dir)
		verifyCrash(t, p, l)
		var wg sync.WaitGroup
		for _, f := range []string{"INBOX", "Archive", "Archive"} {
			wg.Add(1)
			go func() { defer wg.Done(); appendLoop(t, p.Addr("imap"), f, l) }()
		}
		time.Sleep(time.Duration(100+rand.IntN(100)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		wg.Wait()
		locks = uidListLocks(t, dir)
	}
	if len(locks) == 0 {
		t.Skip("no kill landed in a uidlist write")
	}
	p := start(t, dir)
	c := testsupport.Dial(t, p.Addr("imap"))
	c.IMAPLogin("user", "pass")
	for i, f := range crashFolders {
		lines, err := imapWithin(c, fmt.Sprintf("e%d", i), "EXAMINE "+f, 10*time.Second)
		if err != nil {
			t.Fatalf("EXAMINE %s after a kill left %q: no answer within 10 s (%v, got %q)", f, locks, err, lines)
		}
		if st := lines[len(lines)-1]; !strings.HasPrefix(st, fmt.Sprintf("e%d OK", i)) {
			t.Fatalf("EXAMINE %s: %q", f, lines)
		}
	}
	for _, e := range l.errs {
		t.Error(e)
	}
}

// A UID COPY or UID MOVE of a message another session expunged meanwhile
// (this session was not told yet) copies nothing. RFC 9051 §6.4.9: a
// non-existent UID is ignored; the answer may be OK (without COPYUID,
// RFC 4315 §3: there is nothing to report) or NO, but the response stream
// must stay well formed and the session usable.
func TestIMAPCopyMoveOfVanishedUID(t *testing.T) {
	for _, cmd := range []string{"COPY", "MOVE"} {
		t.Run(cmd, func(t *testing.T) {
			p := start(t, "")
			sendRaw(t, p.Addr("smtp"), "a@test", []string{"user@test"}, "Message-ID: <v@test>\r\n\r\nvanishing\r\n")
			a, b := imapDial(t, p), imapDial(t, p)
			a.IMAP(`LIST "" "*"`, "OK *")
			a.IMAP("SELECT INBOX", "OK *")
			uid := uidOfSeq(t, a, 1)
			b.IMAP("SELECT INBOX", "OK *")
			b.IMAP(`STORE 1 +FLAGS.SILENT (\Deleted)`, "OK *")
			b.IMAP("EXPUNGE", "OK *")
			lines, err := imapWithin(a, "x", fmt.Sprintf("UID %s %d Archive", cmd, uid), 10*time.Second)
			if err != nil {
				t.Fatalf("UID %s of an expunged UID: no tagged answer (%v); got %q", cmd, err, lines)
			}
			for _, l := range lines {
				if strings.Contains(l, "SERVERBUG") || strings.Contains(l, "COPYUID") && !copyUIDRe.MatchString(l) {
					t.Errorf("UID %s of an expunged UID: %q", cmd, l)
				}
			}
			if st := lines[len(lines)-1]; !strings.HasPrefix(st, "x OK") && !strings.HasPrefix(st, "x NO") {
				t.Errorf("UID %s of an expunged UID: tagged %q", cmd, st)
			}
			lines, err = imapWithin(a, "y", "NOOP", 10*time.Second)
			if err != nil || !strings.HasPrefix(lines[len(lines)-1], "y OK") {
				t.Fatalf("NOOP after it: %q %v", lines, err)
			}
			a.IMAP("SELECT Archive", "OK * SELECT completed*") // Archive still works
		})
	}
}

// Two IMAP sessions changing INBOX at once, one expunging, one moving
// messages to Archive, with no POP3 session anywhere: each EXPUNGE and
// MOVE gets OK. NO [INUSE] ("A POP3 session holds this mailbox") is for a
// POP3 session's lock (issue 15: what IMAP does while POP3 holds the
// maildrop follows one rule), not for another IMAP session's expunge.
func TestIMAPConcurrentInboxChanges(t *testing.T) {
	p := start(t, "")
	c := imapDial(t, p)
	c.IMAP(`LIST "" "*"`, "OK *")
	const n = 60
	for i := 0; i < n; i++ {
		appendLiteral(t, c, "INBOX", "", fmt.Sprintf("Message-ID: <c%d@crash>\r\n\r\nbody %d\r\n", i, i))
	}
	l := newCrashLedger()
	var mu sync.Mutex
	var refused []string
	work := func(parity int, op func(s *crashSession, uid uint32) (string, error)) {
		s, err := dialCrash(t, p.Addr("imap"))
		if err != nil {
			l.errorf("dial: %v", err)
			return
		}
		if err := s.selectFolder(l, "INBOX"); err != nil {
			l.errorf("select: %v", err)
			return
		}
		for done := 0; done < n/2; {
			uid, _, err := s.pick(l, "INBOX", parity)
			if err != nil {
				l.errorf("pick: %v", err)
				return
			}
			if uid == 0 {
				continue
			}
			st, err := op(s, uid)
			if err != nil {
				l.errorf("%v", err)
				return
			}
			if !strings.HasPrefix(st, "OK") {
				mu.Lock()
				refused = append(refused, st)
				mu.Unlock()
				continue
			}
			done++
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		work(0, func(s *crashSession, uid uint32) (string, error) {
			_, st, err := s.do(fmt.Sprintf("UID MOVE %d Archive", uid))
			return st, err
		})
	}()
	go func() {
		defer wg.Done()
		work(1, func(s *crashSession, uid uint32) (string, error) {
			if _, st, err := s.do(fmt.Sprintf(`UID STORE %d +FLAGS.SILENT (\Deleted)`, uid)); err != nil || !strings.HasPrefix(st, "OK") {
				return st, err
			}
			_, st, err := s.do(fmt.Sprintf("UID EXPUNGE %d", uid))
			return st, err
		})
	}()
	wg.Wait()
	for _, e := range l.errs {
		t.Error(e)
	}
	if len(refused) > 0 {
		t.Errorf("%d MOVEs and EXPUNGEs refused with no POP3 session, e.g. %q", len(refused), refused[0])
	}
	v := viewFolder(t, c, "INBOX")
	if v.Exists != 0 {
		t.Errorf("INBOX keeps %d messages", v.Exists)
	}
}
