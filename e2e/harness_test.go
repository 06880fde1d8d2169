// Package e2e drives the real postoffice binary over real sockets: it is
// built once, started on free loopback ports with a temporary mailbox
// directory, and talked to with independent clients.
package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postoffice-e2e-")
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
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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
	args := []string{"serve", "--mailbox-dir", dir, "--smtp-addr", "127.0.0.1:0", "--pop3-addr", "127.0.0.1:0",
		"--hostname", "mx.test", "--shutdown-timeout", "10s"}
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

// textConn is a minimal line client for transcripts.
type textConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *textConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *textConn) send(s string) {
	c.t.Helper()
	c.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// line reads one reply line without CRLF.
func (c *textConn) line() string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// expect reads one line (SMTP: the whole multi-line reply, returning the
// last line) and checks it against a glob pattern.
func (c *textConn) expect(pattern string) string {
	c.t.Helper()
	l := c.line()
	for len(l) >= 4 && l[3] == '-' && l[0] >= '2' && l[0] <= '5' {
		l = c.line()
	}
	if !glob(pattern, l) {
		c.t.Fatalf("got %q, want %q", l, pattern)
	}
	return l
}

// multiline reads a POP3 multi-line body up to the final ".", undoing
// dot-stuffing, and returns it with CRLF line ends.
func (c *textConn) multiline() string {
	c.t.Helper()
	var b strings.Builder
	for {
		c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if l == ".\r\n" {
			return b.String()
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		b.WriteString(l)
	}
}

var queuedRe = regexp.MustCompile(`^250 2\.0\.0 Ok: queued as (\S+)$`)

// sendRaw delivers one message over a raw SMTP session (data already
// dot-stuffed with CRLF line ends) and returns the queue id.
func sendRaw(t *testing.T, addr, from string, to []string, data string) string {
	t.Helper()
	c := dial(t, addr)
	c.expect("220 *")
	c.send("EHLO client.test\r\n")
	c.expect("250 *")
	c.send("MAIL FROM:<" + from + ">\r\n")
	c.expect("250 2.1.0*")
	for _, r := range to {
		c.send("RCPT TO:<" + r + ">\r\n")
		c.expect("250 2.1.5*")
	}
	c.send("DATA\r\n")
	c.expect("354 *")
	c.send(data + ".\r\n")
	m := queuedRe.FindStringSubmatch(c.expect("250 2.0.0 Ok: queued as *"))
	c.send("QUIT\r\n")
	c.expect("221 *")
	return m[1]
}

// stripTrace returns the message of an .eml file without the Return-Path
// and Received fields Postoffice put in front, checking they are there.
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
	return s[:j], s[j:]
}

// mailFiles returns the paths of all message files of a user's Maildir.
func mailFiles(t *testing.T, dir, user string) []string {
	t.Helper()
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

// glob matches s against pattern, where only '*' is special (any run of
// characters): POP3 response codes like [IN-USE] stay literal.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
