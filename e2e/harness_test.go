// Package e2e drives the real postoffice binary over real sockets: it is
// built once, started on free loopback ports with a temporary mailbox
// directory, and talked to with independent clients.
package e2e

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"postoffice/internal/testsupport"
	"postoffice/internal/testsupport/engines"
)

var binary string

func TestMain(m *testing.M) {
	// The binary under test may be built with -race and share the machine
	// with parallel tests: give each read and write more time.
	testsupport.Timeout = 30 * time.Second
	dir, err := binaryDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "postoffice")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/postoffice")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building postoffice:", err)
		os.Exit(1)
	}
	switch e2eStore {
	case "", "maildir":
	case "postgres":
		// The engines start at the first server that needs them and stop
		// when the tests end. engines.Main exits without returning: the
		// binary stays in its fixed directory (binaryDir), replaced by
		// the next run rather than piling up.
		engines.Main(m)
		return
	default:
		fmt.Fprintf(os.Stderr, "POSTOFFICE_E2E_STORE=%q: want maildir or postgres\n", e2eStore)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eStore is the store the servers run on: POSTOFFICE_E2E_STORE, "" (the
// Maildir) or "postgres" (the shared store on PostgreSQL and S3, servers
// started by internal/testsupport/engines).
var e2eStore = os.Getenv("POSTOFFICE_E2E_STORE")

// binaryDir is where the binary under test is built: a fresh temporary
// directory, removed after the tests; under postgres, where engines.Main
// exits without returning, one fixed directory per checkout and race
// mode, reused by the next run.
func binaryDir() (string, error) {
	if !underPostgres() {
		return os.MkdirTemp("", "postoffice-e2e-")
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(fmt.Sprint(wd, raceEnabled)))
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("postoffice-e2e-%d-%x", os.Getuid(), sum[:6]))
	return dir, os.MkdirAll(dir, 0o700)
}

// underPostgres reports whether the servers run on the shared store.
func underPostgres() bool { return e2eStore == "postgres" }

// requireMaildir skips t when the servers do not run on the Maildir: t
// inspects or changes the Maildir's files on disk (why says how).
func requireMaildir(t testing.TB, why string) {
	t.Helper()
	if underPostgres() {
		t.Skipf("needs the Maildir store (%s); POSTOFFICE_E2E_STORE=%s", why, e2eStore)
	}
}

// stores maps a mailbox directory to the shared store's flags of the
// servers started on it: one fresh database and bucket per directory, so
// that a server restarted on the same directory, or two servers started on
// it, share their storage as two nodes do.
var stores struct {
	mu   sync.Mutex
	args map[string][]string
}

// storeArgs returns the flags that put a server on dir's storage: none for
// the Maildir (--mailbox-dir is enough), the shared store's otherwise.
func storeArgs(t *testing.T, dir string) []string {
	t.Helper()
	if !underPostgres() {
		return nil
	}
	key := filepath.Clean(dir)
	stores.mu.Lock()
	defer stores.mu.Unlock()
	if a, ok := stores.args[key]; ok {
		return a
	}
	dsn := engines.Postgres(t)
	endpoint, access, secret, bucket := engines.S3(t)
	a := []string{"--store", "postgres", "--pg-url", dsn, "--s3-endpoint", endpoint, "--s3-bucket", bucket,
		"--s3-access-key", access, "--s3-secret-key", secret}
	if stores.args == nil {
		stores.args = map[string][]string{}
	}
	stores.args[key] = a
	// The database and the bucket go when t ends (engines), after the
	// servers t started (cleanups run last registered first).
	t.Cleanup(func() {
		stores.mu.Lock()
		delete(stores.args, key)
		stores.mu.Unlock()
	})
	return a
}

// proc is a running postoffice.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	dir    string // mailbox dir
	addrs  map[string]string
	mu     sync.Mutex
	log    strings.Builder
	exited chan struct{}
	err    error
}

var listenRe = regexp.MustCompile(`msg=listening proto=(\w+) addr=(\S+)`)

// start runs the binary with a mailbox in dir (a fresh temp dir when
// empty) on port 0 listeners, plus extra flags, and waits until SMTP and
// POP3 listen.
func start(t *testing.T, dir string, extra ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "mailbox")
	}
	args := []string{"serve", "--mailbox-dir", dir, "--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0", "--imap-addr", "127.0.0.1:0",
		"--hostname", "mx.test", "--shutdown-timeout", "10s"}
	args = append(args, storeArgs(t, dir)...)
	args = append(args, extra...)
	p := &proc{t: t, dir: dir, addrs: map[string]string{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			if m := listenRe.FindStringSubmatch(line); m != nil {
				p.addrs[m[1]] = m[2]
			}
			p.mu.Unlock()
			if !signalled && strings.Contains(line, "postoffice started") {
				signalled = true
				close(ready)
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	select {
	case <-ready:
	case <-p.exited:
		t.Fatalf("postoffice exited at start: %v\n%s", p.err, p.Log())
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		t.Fatalf("postoffice did not start\n%s", p.Log())
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("server log:\n%s", p.Log())
		}
	})
	return p
}

func (p *proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *proc) Addr(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.addrs[name]
	if a == "" {
		p.t.Fatalf("no %s listener", name)
	}
	return a
}

// stop sends sig and waits for the exit, returning the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("postoffice did not exit")
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

var queuedRe = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as (\S+)$`)

// sendRaw delivers one message over a raw SMTP session (data already
// dot-stuffed with CRLF line ends) and returns the queue id.
func sendRaw(t *testing.T, addr, from string, to []string, data string) string {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.ExpectReply("220 *")
	c.Send("EHLO client.test\r\n")
	c.ExpectReply("250 *")
	c.Send("MAIL FROM:<" + from + ">\r\n")
	c.ExpectReply("250 2.1.0*")
	for _, r := range to {
		c.Send("RCPT TO:<" + r + ">\r\n")
		c.ExpectReply("250 2.1.5*")
	}
	c.Send("DATA\r\n")
	c.ExpectReply("354 *")
	c.Send(data + ".\r\n")
	m := queuedRe.FindStringSubmatch(c.ExpectReply("250 2.0.0 Ok: queued as *").Last())
	c.Send("QUIT\r\n")
	c.ExpectReply("221 *")
	return m[1]
}

// stripTrace returns the message of an .eml file without the Return-Path
// and Received fields Postoffice put in front, checking they are there,
// and without the X-Original-To fields that follow them when every
// recipient has the same mailbox.
func stripTrace(t *testing.T, eml []byte) (trace, msg string) {
	t.Helper()
	s := string(eml)
	if !strings.HasPrefix(s, "Return-Path: <") {
		t.Fatalf("no Return-Path first: %.80q", s)
	}
	i := strings.Index(s, "\r\nReceived: ")
	if i < 0 {
		t.Fatalf("no Received: %.200q", s)
	}
	j := i + 2
	for {
		k := strings.Index(s[j:], "\r\n")
		if k < 0 {
			t.Fatal("unterminated Received")
		}
		j += k + 2
		if j >= len(s) || (s[j] != '\t' && s[j] != ' ') {
			break
		}
	}
	for strings.HasPrefix(s[j:], "X-Original-To: ") {
		k := strings.Index(s[j:], "\r\n")
		if k < 0 {
			t.Fatal("unterminated X-Original-To")
		}
		j += k + 2
	}
	return s[:j], s[j:]
}

// mailFiles returns the paths of all message files of a user's Maildir.
func mailFiles(t *testing.T, dir, user string) []string {
	t.Helper()
	requireMaildir(t, "reads the message files of a Maildir")
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(dir, user, sub))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(dir, user, sub, e.Name()))
		}
	}
	return out
}
