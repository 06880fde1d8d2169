package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// popConn is one POP3 client connection.
type popConn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	end     time.Time
}

// dialPOP3 connects and reads the greeting.
func dialPOP3(ctx context.Context, o *options) (*popConn, error) {
	d := net.Dialer{Timeout: o.timeout}
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	end, _ := ctx.Deadline()
	pc := &popConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 16<<10), timeout: o.timeout, end: end}
	if _, err := pc.status(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return pc, nil
}

func (pc *popConn) deadline() {
	t := time.Now().Add(pc.timeout)
	if !pc.end.IsZero() && pc.end.Before(t) {
		t = pc.end
	}
	pc.c.SetDeadline(t)
}

// cmd sends one command line and reads its status line.
func (pc *popConn) cmd(line string) (string, error) {
	pc.w.WriteString(line + "\r\n")
	pc.deadline()
	if err := pc.w.Flush(); err != nil {
		return "", err
	}
	return pc.status()
}

// status reads a status line and fails on -ERR.
func (pc *popConn) status() (string, error) {
	pc.deadline()
	line, err := pc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if !strings.HasPrefix(line, "+OK") {
		return line, fmt.Errorf("server said %q", line)
	}
	return line, nil
}

// multiline reads a dot-terminated body and returns its size on the wire
// (without the terminator).
func (pc *popConn) multiline() (int, error) {
	n := 0
	for {
		pc.deadline()
		line, err := pc.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			n += len(line)
			continue
		}
		if err != nil {
			return n, err
		}
		if len(line) == 3 && line[0] == '.' && line[1] == '\r' {
			return n, nil
		}
		n += len(line)
	}
}

// login runs USER and PASS (RFC 1939 §7) and STAT, returning the count.
func (pc *popConn) login(user, pass string) (int, error) {
	if _, err := pc.cmd("USER " + user); err != nil {
		return 0, fmt.Errorf("USER: %w", err)
	}
	if _, err := pc.cmd("PASS " + pass); err != nil {
		return 0, fmt.Errorf("PASS: %w", err)
	}
	st, err := pc.cmd("STAT")
	if err != nil {
		return 0, fmt.Errorf("STAT: %w", err)
	}
	f := strings.Fields(st)
	if len(f) < 3 {
		return 0, fmt.Errorf("STAT: bad reply %q", st)
	}
	return strconv.Atoi(f[1])
}

// runPOP3 retrieves (and optionally deletes) every message of every user.
func runPOP3(ctx context.Context, o *options) Result {
	return runWorkers(ctx, o, func(ctx context.Context, o *options, w int, col *collector) {
		user := o.user
		if o.conns > 1 {
			user += strconv.Itoa(w + 1)
		}
		if err := popWorker(ctx, o, user, col); err != nil {
			col.fail(err, 1)
		}
	})
}

// popWorker runs one session: login, RETR (and DELE) all, QUIT. Up to
// o.window RETRs are in flight (RFC 2449 PIPELINING); each RETR's latency
// runs from the write of its command to the end of its body.
func popWorker(ctx context.Context, o *options, user string, col *collector) error {
	pc, err := dialPOP3(ctx, o)
	if err != nil {
		return err
	}
	defer pc.c.Close()
	n, err := pc.login(user, o.pass)
	if err != nil {
		return err
	}
	sent := make([]time.Time, n+1)
	next := 1
	// The latencies and sizes are recorded only once QUIT succeeded.
	type done struct {
		d time.Duration
		n int
	}
	got := make([]done, 0, n)
	for i := 1; i <= n; i++ {
		if ctx.Err() != nil {
			col.fail(fmt.Errorf("duration cap reached"), n-i+1)
			return nil
		}
		for ; next <= n && next < i+o.window; next++ {
			pc.w.WriteString("RETR " + strconv.Itoa(next) + "\r\n")
			if o.dele {
				pc.w.WriteString("DELE " + strconv.Itoa(next) + "\r\n")
			}
			sent[next] = time.Now()
		}
		pc.deadline()
		if err := pc.w.Flush(); err != nil {
			return err
		}
		if _, err := pc.status(); err != nil {
			return fmt.Errorf("RETR %d: %w", i, err)
		}
		size, err := pc.multiline()
		if err != nil {
			return fmt.Errorf("RETR %d: %w", i, err)
		}
		got = append(got, done{time.Since(sent[i]), size})
		if o.dele {
			if _, err := pc.status(); err != nil {
				return fmt.Errorf("DELE %d: %w", i, err)
			}
		}
	}
	if _, err := pc.cmd("QUIT"); err != nil {
		return fmt.Errorf("QUIT: %w", err)
	}
	for _, g := range got {
		col.ok(g.d, g.n)
	}
	return nil
}

// runPOP3Stat measures o.msgs times the cost of connect + login + STAT.
func runPOP3Stat(ctx context.Context, o *options) Result {
	var col collector
	start := time.Now()
	for i := 0; i < o.msgs; i++ {
		if ctx.Err() != nil {
			col.fail(fmt.Errorf("duration cap reached"), o.msgs-i)
			break
		}
		t0 := time.Now()
		pc, err := dialPOP3(ctx, o)
		if err != nil {
			col.fail(err, 1)
			continue
		}
		if _, err := pc.login(o.user, o.pass); err != nil {
			col.fail(err, 1)
			pc.c.Close()
			continue
		}
		d := time.Since(t0)
		_, err = pc.cmd("QUIT")
		pc.c.Close()
		if err != nil {
			col.fail(fmt.Errorf("QUIT: %w", err), 1)
			continue
		}
		col.ok(d, 0)
	}
	return col.result(o, time.Since(start))
}

// vocabSize is the vocabulary of -words messages.
const vocabSize = 20000

var syllables = []string{"ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "ba", "do", "fi", "gu", "ha", "jo"}

// vocabWord is word k of the -words vocabulary: three or four syllables,
// the same on every run (bench/index.sh searches for known ones).
func vocabWord(k int) string {
	w := syllables[k%16] + syllables[k/16%16] + syllables[k/256%16]
	if k >= 4096 {
		w += syllables[k/4096%16]
	}
	return w
}

// wordMessage is a message of about size octets whose subject and body
// are words of the vocabulary drawn with Zipf frequencies (as in real
// text: a few words are everywhere, most are rare), so that text searches
// have realistic hit counts.
func wordMessage(z *rand.Zipf, size, n int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Sender %s <s%d@example.com>\r\nTo: <user@example.com>\r\nSubject: %s %s %s %d\r\n"+
		"Message-ID: <%d@bench.example>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n",
		vocabWord(n%500), n%500, vocabWord(int(z.Uint64())), vocabWord(int(z.Uint64())), vocabWord(int(z.Uint64())), n, n)
	line := 0
	for b.Len() < size-2 {
		w := vocabWord(int(z.Uint64()))
		if line+len(w)+1 > 76 {
			b.WriteString("\r\n")
			line = 0
		} else if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(w)
		line += len(w)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// fillMaildir writes o.count messages of o.size octets into o.dir/new.
func fillMaildir(o *options) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(o.dir, sub), 0o700); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(uint64(o.seed), 7))
	var bodies [variants][]byte
	for i := range variants {
		bodies[i], _ = makeMessage(rng, o.size, i)
	}
	base := time.Now().Add(-time.Hour).UnixNano()
	var rnd [4]byte
	for i := range rnd {
		rnd[i] = byte(rng.Uint32())
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", "\\057", ":", "\\072").Replace(host)
	var zipf *rand.Zipf
	if o.words {
		zipf = rand.NewZipf(rand.New(rand.NewPCG(uint64(o.seed), 11)), 1.07, 2, vocabSize-1)
	}
	for i := 0; i < o.count; i++ {
		body := bodies[i%variants]
		if o.words {
			body = wordMessage(zipf, o.size, i)
		}
		var name string
		switch o.naming {
		case "postoffice":
			// The form store.NewID gives: 16 hex of UnixNano, 8 hex random, 8 hex counter.
			name = fmt.Sprintf("%016x.%x.%08x.eml", base+int64(i), rnd[:], i+1)
		case "dovecot":
			// Dovecot's maildir names carry the size (S=) so it need not stat.
			name = fmt.Sprintf("%d.M%dP%d.%s,S=%d", base/1e9, i, os.Getpid(), host, len(body))
		default:
			return fmt.Errorf("unknown -naming %q", o.naming)
		}
		if err := os.WriteFile(filepath.Join(o.dir, "new", name), body, 0o600); err != nil {
			return err
		}
	}
	if !bytes.HasSuffix(bodies[0], []byte("\r\n")) {
		return fmt.Errorf("generated body lacks CRLF ending")
	}
	return nil
}

// printQueries prints n search queries over the -words vocabulary, one a
// line: single words of frequency ranks spread from common to rare, word
// prefixes, two words together and a subject search, in a fixed order.
func printQueries(n int) {
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < n; i++ {
		// Ranks log-uniform over the vocabulary.
		r := func() int { return int(math.Exp(rng.Float64()*math.Log(vocabSize-3))) + 2 }
		switch i % 4 {
		case 0:
			fmt.Println(vocabWord(r()))
		case 1:
			w := vocabWord(r())
			fmt.Println(w[:4])
		case 2:
			fmt.Println(vocabWord(r()), vocabWord(r()))
		case 3:
			fmt.Println("subject:" + vocabWord(r()))
		}
	}
}
