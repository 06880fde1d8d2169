// Command loadgen drives an SMTP or POP3 server with a bounded load and
// reports throughput, latency percentiles and errors as a table and as JSON.
//
// It is the load generator of bench/run.sh, and it measures every server of
// the comparison the same way, so the figures are comparable.
//
//	loadgen -mode smtp -addr 127.0.0.1:2525 -conns 8 -msgs 500 -size 2048
//	loadgen -mode pop3 -addr 127.0.0.1:1100 -user u -pass p -dele
//	loadgen -mode pop3stat -addr 127.0.0.1:1100 -user u -pass p -msgs 3
//	loadgen -mode maildir -dir /tmp/mb/user -count 10000 -size 2048 -naming postoffice
//	loadgen -mode files -dir /tmp/files -conns 8 -msgs 250 -size 2048
//
// Modes:
//
//   - smtp: -conns connections each send -msgs messages of -size octets
//     (EHLO once; MAIL, RCPT, DATA per message). -newconn dials a fresh
//     connection (EHLO ... QUIT) per message. -pipelining sends MAIL, RCPT and
//     DATA in one write (RFC 2920). -bdat sends the body with BDAT ... LAST
//     (RFC 3030) instead of DATA. Bodies are random text in CRLF lines, about
//     one in eight starting with a dot (so dot-stuffing is exercised).
//     Latency is from the first command of a message to its final 250.
//   - pop3: one session per -conns (each needs its own user when > 1): USER,
//     PASS, STAT, RETR of every message (-window commands in flight), with
//     -dele a DELE after each RETR, then QUIT. The time includes QUIT (where
//     deletions are committed). Latency is per RETR.
//   - pop3stat: -msgs times: connect, USER, PASS, STAT, QUIT; the latency is
//     from connect to the STAT reply (the cost of opening the maildrop).
//   - ports: prints -count free loopback ports; report: reads the JSON
//     lines of -in (written by bench/run.sh) and prints markdown tables of
//     medians and of Postoffice's ratios to its peers.
//   - maildir: writes -count message files of -size octets straight into
//     -dir/new (creating -dir/{tmp,new,cur}), named as Postoffice names them
//     (-naming postoffice) or as Dovecot does, with the size in the name
//     (-naming dovecot). No server involved: it prepares POP3 runs.
//   - files: the no-protocol baseline. -conns writers each store -msgs
//     messages of -size octets in the Maildir -dir, one file per message:
//     create tmp/<name>, write, fsync, close, rename to new/<name>, fsync
//     new/.
//     No server involved: it measures what the disk gives durable
//     one-file-per-message storage with no fsync shared.
//
// Every load loop is bounded twice: by its count and by -duration, after
// which outstanding work is abandoned and counted as errors.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// options are the command-line settings.
type options struct {
	mode       string
	addr       string
	conns      int
	msgs       int
	size       int
	newConn    bool
	pipelining bool
	bdat       bool
	from       string
	to         string
	user       string
	pass       string
	dele       bool
	window     int
	duration   time.Duration
	timeout    time.Duration
	jsonOnly   bool
	label      string
	dir        string
	count      int
	naming     string
	words      bool
	seed       int64
	in         string
	mailbox    string
	smtpAddr   string
	lmtp       bool
	ready      string
}

// Result is one run's summary; it is also the JSON output.
type Result struct {
	Label      string  `json:"label,omitempty"`
	Mode       string  `json:"mode"`
	Addr       string  `json:"addr"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	Messages   int64   `json:"messages"` // completed successfully
	Errors     int64   `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	SelectMs   float64 `json:"select_ms,omitempty"` // imapfetch, imapbody: SELECT alone (median)
	FetchMs    float64 `json:"fetch_ms,omitempty"`  // imapfetch, imapbody: the FETCH alone (median)
	Early      int     `json:"early,omitempty"`     // imapidle: EXISTS read before the 250
}

// collector gathers per-message outcomes from concurrent workers.
type collector struct {
	mu        sync.Mutex
	lat       []time.Duration
	bytes     int64
	errors    int64
	firstErr  error
	completed int64
}

func (c *collector) ok(d time.Duration, n int) {
	c.mu.Lock()
	c.lat = append(c.lat, d)
	c.bytes += int64(n)
	c.completed++
	c.mu.Unlock()
}

// okN records one latency for n completed messages of octets in all.
func (c *collector) okN(d time.Duration, octets, n int) {
	c.mu.Lock()
	c.lat = append(c.lat, d)
	c.bytes += int64(octets)
	c.completed += int64(n)
	c.mu.Unlock()
}

func (c *collector) fail(err error, n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	c.errors += int64(n)
	if c.firstErr == nil {
		c.firstErr = err
	}
	c.mu.Unlock()
}

// result summarises the collected outcomes over elapsed.
func (c *collector) result(o *options, elapsed time.Duration) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.lat)
	pct := func(p float64) float64 {
		if len(c.lat) == 0 {
			return 0
		}
		i := int(p * float64(len(c.lat)-1))
		return float64(c.lat[i]) / float64(time.Millisecond)
	}
	r := Result{
		Label: o.label, Mode: o.mode, Addr: o.addr, Conns: o.conns, Size: o.size,
		Messages: c.completed, Errors: c.errors, Seconds: elapsed.Seconds(),
		P50ms: pct(0.50), P99ms: pct(0.99), MaxMs: pct(1),
	}
	if c.firstErr != nil {
		r.FirstError = c.firstErr.Error()
	}
	if s := elapsed.Seconds(); s > 0 {
		r.MsgsPerSec = float64(c.completed) / s
		r.MBPerSec = float64(c.bytes) / s / 1e6
	}
	return r
}

// runWorkers runs worker for w = 0 .. o.conns-1 concurrently, each with
// the shared collector, and summarises their outcomes over the whole run.
func runWorkers(ctx context.Context, o *options, worker func(ctx context.Context, o *options, w int, col *collector)) Result {
	var col collector
	var wg sync.WaitGroup
	start := time.Now()
	for w := range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			worker(ctx, o, w, &col)
		}()
	}
	wg.Wait()
	return col.result(o, time.Since(start))
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "smtp", "smtp, pop3, pop3stat, imapfetch, imapbody, imapidle, imapidlemany, files (no-protocol baseline into -dir), maildir, ports (print -count free ports) or report (-in results)")
	flag.StringVar(&o.addr, "addr", "127.0.0.1:2525", "server address")
	flag.IntVar(&o.conns, "conns", 1, "concurrent connections")
	flag.IntVar(&o.msgs, "msgs", 100, "smtp: messages per connection; files: per writer; pop3stat: logins")
	flag.IntVar(&o.size, "size", 2048, "message size in octets (smtp, files, maildir)")
	flag.BoolVar(&o.newConn, "newconn", false, "smtp: a new connection per message")
	flag.BoolVar(&o.pipelining, "pipelining", false, "smtp: send MAIL, RCPT, DATA/BDAT in one write")
	flag.BoolVar(&o.bdat, "bdat", false, "smtp: send the body with BDAT LAST instead of DATA")
	flag.StringVar(&o.from, "from", "bench@example.com", "smtp: envelope sender")
	flag.StringVar(&o.to, "to", "user@example.com", "smtp: recipient")
	flag.StringVar(&o.user, "user", "user", "pop3: user name (with -conns > 1, user1, user2, ... are appended a number)")
	flag.StringVar(&o.pass, "pass", "pass", "pop3: password")
	flag.BoolVar(&o.dele, "dele", false, "pop3: DELE every message after RETR")
	flag.IntVar(&o.window, "window", 1, "pop3: RETR commands in flight (1: one round trip each)")
	flag.DurationVar(&o.duration, "duration", 120*time.Second, "cap on the whole run")
	flag.DurationVar(&o.timeout, "timeout", 30*time.Second, "cap on one reply")
	flag.BoolVar(&o.jsonOnly, "json", false, "print only the JSON result")
	flag.StringVar(&o.label, "label", "", "label copied into the result")
	flag.StringVar(&o.dir, "dir", "", "maildir, files: the Maildir to fill")
	flag.IntVar(&o.count, "count", 1000, "maildir: number of files")
	flag.StringVar(&o.naming, "naming", "postoffice", "maildir: postoffice or dovecot file names")
	flag.BoolVar(&o.words, "words", false, "maildir: every message different, of words with Zipf frequencies (for text search), instead of random octets")
	flag.StringVar(&o.in, "in", "", "report: the results file (JSON lines) to summarise")
	flag.StringVar(&o.mailbox, "mailbox", "INBOX", "imap*: the mailbox to SELECT")
	flag.StringVar(&o.smtpAddr, "smtp-addr", "", "imapidle, imapidlemany: SMTP (or LMTP) address to deliver to")
	flag.BoolVar(&o.lmtp, "lmtp", false, "smtp, imapidle*: speak LMTP (LHLO) instead of SMTP (EHLO)")
	flag.StringVar(&o.ready, "ready", "", "imapidlemany: create this file when every session is idling, hold them until it is removed")
	flag.Int64Var(&o.seed, "seed", 1, "seed of the random bodies")
	flag.Parse()
	if o.conns < 1 || o.msgs < 0 || o.size < 256 || o.window < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "loadgen: need -conns >= 1, -msgs >= 0, -size >= 256, -window >= 1, -duration > 0")
		os.Exit(2)
	}

	var err error
	switch o.mode {
	case "maildir":
		err = fillMaildir(&o)
	case "ports":
		err = freePorts(o.count)
	case "report":
		err = report(o.in, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if o.mode == "maildir" || o.mode == "ports" || o.mode == "report" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	var res Result
	switch o.mode {
	case "smtp":
		res = runSMTP(ctx, &o)
	case "pop3":
		res = runPOP3(ctx, &o)
	case "vocab":
		printQueries(o.count)
		return
	case "pop3stat":
		res = runPOP3Stat(ctx, &o)
	case "imapfetch":
		res = runIMAPFetch(ctx, &o)
	case "imapbody":
		res = runIMAPBody(ctx, &o)
	case "imapidle":
		res = runIMAPIdle(ctx, &o)
	case "imapidlemany":
		res = runIMAPIdleMany(ctx, &o)
	case "files":
		if res, err = runFiles(ctx, &o); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
	default:
		fmt.Fprintf(os.Stderr, "loadgen: unknown -mode %q\n", o.mode)
		os.Exit(2)
	}
	if !o.jsonOnly {
		printTable(os.Stdout, res)
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if res.Errors > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d errors, first: %s\n", res.Errors, res.FirstError)
		os.Exit(1)
	}
}

// printTable writes res as a small aligned table.
func printTable(w io.Writer, r Result) {
	fmt.Fprintf(w, "%-10s %-6s %6s %8s %9s %8s %10s %9s %8s %8s\n",
		"label", "mode", "conns", "size", "messages", "errors", "msgs/s", "MB/s", "p50 ms", "p99 ms")
	fmt.Fprintf(w, "%-10s %-6s %6d %8d %9d %8d %10.1f %9.2f %8.2f %8.2f\n",
		r.Label, r.Mode, r.Conns, r.Size, r.Messages, r.Errors, r.MsgsPerSec, r.MBPerSec, r.P50ms, r.P99ms)
}
