package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"

	"postoffice/internal/testsupport"
	"postoffice/internal/testsupport/engines"
)

// The helpers of the shared-store tests (shared_nodes_test.go): one real
// PostgreSQL cluster and one real S3 server (versitygw) per test, both of
// the test's own so that it may stop and start them, and postoffice
// processes started on them with --store postgres.

// sharedEngines is one test's PostgreSQL database and S3 bucket.
type sharedEngines struct {
	t      *testing.T
	pg     *engines.Cluster
	s3     *engines.S3Server
	dsn    string
	bucket string
}

// newSharedEngines starts a PostgreSQL cluster and an S3 server of t's
// own, makes a database and a bucket on them, and brings the database's
// schema up to date with the binary's schema migration.
func newSharedEngines(t *testing.T) *sharedEngines {
	t.Helper()
	needSharedWiring(t)
	e := &sharedEngines{t: t, pg: engines.NewPostgres(t), s3: engines.NewS3Server(t)}
	e.dsn = e.pg.CreateDatabase(t)
	e.bucket = e.s3.CreateBucket(t)
	e.migrate()
	return e
}

var wiring struct {
	once sync.Once
	help string
}

// needSharedWiring fails t when the binary has no shared store: these
// tests are the acceptance of issue 18, they do not skip.
func needSharedWiring(t *testing.T) {
	t.Helper()
	wiring.once.Do(func() {
		out, _ := exec.Command(binary, "serve", "--help").CombinedOutput()
		wiring.help = string(out)
	})
	if !strings.Contains(wiring.help, "--pg-url") || !strings.Contains(wiring.help, "--s3-endpoint") {
		t.Fatalf("postoffice serve --help names no --pg-url and --s3-endpoint: the shared store is not wired (%d octets of help)", len(wiring.help))
	}
}

// migrate applies the schema with "postoffice migrate --schema" when the
// binary has that command; without it, serve must bring the schema up
// itself (and fails its start otherwise, which the test reports).
func (e *sharedEngines) migrate() {
	e.t.Helper()
	help, _ := exec.Command(binary, "migrate", "--help").CombinedOutput()
	if !strings.Contains(string(help), "--schema") {
		e.t.Logf("postoffice migrate has no --schema: leaving the schema to serve")
		return
	}
	cmd := exec.Command(binary, "migrate", "--schema", "--pg-url", e.dsn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("postoffice migrate --schema: %v\n%s", err, out)
	}
}

// flags are the serve flags of a node named node on e's engines.
func (e *sharedEngines) flags(node string) []string {
	return []string{"--store", "postgres", "--pg-url", e.dsn,
		"--s3-endpoint", e.s3.Endpoint, "--s3-bucket", e.bucket,
		"--s3-access-key", e.s3.Access, "--s3-secret-key", e.s3.Secret, "--s3-region", e.s3.Region,
		"--store-timeout", "3s", "--node-name", node, "--http-addr", "127.0.0.1:0"}
}

// node starts a postoffice named name on e's engines.
func (e *sharedEngines) node(name string, extra ...string) *proc {
	e.t.Helper()
	return start(e.t, "", append(e.flags(name), extra...)...)
}

// db opens a connection of the test's own to the database, for checks
// that look under the store (rows and blobs).
func (e *sharedEngines) db() *pgx.Conn {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, e.dsn)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// objects lists the keys of the bucket's objects.
func (e *sharedEngines) objects() map[string]bool {
	e.t.Helper()
	c, err := e.s3.Client()
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]bool{}
	for o := range c.ListObjects(ctx, e.bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			e.t.Fatalf("listing the bucket: %v", o.Err)
		}
		out[o.Key] = true
	}
	return out
}

// putObject stores an object directly in the bucket.
func (e *sharedEngines) putObject(key, body string) {
	e.t.Helper()
	c, err := e.s3.Client()
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.PutObject(ctx, e.bucket, key, strings.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		e.t.Fatal(err)
	}
}

// modified returns the object's Last-Modified date.
func (e *sharedEngines) modified(key string) time.Time {
	e.t.Helper()
	c, err := e.s3.Client()
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := c.StatObject(ctx, e.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return info.LastModified
}

// blobKeys returns the keys of the blobs rows and those messages refer to.
func (e *sharedEngines) blobKeys(db *pgx.Conn) (blobs, referenced map[string]bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	read := func(q string) map[string]bool {
		rows, err := db.Query(ctx, q)
		if err != nil {
			e.t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			e.t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range keys {
			m[k] = true
		}
		return m
	}
	return read(`SELECT key FROM blobs`), read(`SELECT DISTINCT blob_key FROM messages`)
}

// smtpResult is what one delivery attempt got.
type smtpResult struct {
	reply string // the last reply line to the end of DATA ("" when none came)
	id    string // the queue id of a 250
	err   error  // a transport error or an unexpected reply before DATA's end
}

// sharedSend delivers one message over its own SMTP session without failing
// the test (safe in any goroutine): what the server answered to the end of
// DATA, or the error that stopped the session before.
func sharedSend(addr, data string) smtpResult {
	nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return smtpResult{err: err}
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(nc)
	reply := func() (string, error) {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return strings.TrimRight(l, "\r\n"), err
			}
			l = strings.TrimRight(l, "\r\n")
			if len(l) < 4 || l[3] != '-' {
				return l, nil
			}
		}
	}
	step := func(send, want string) (string, error) {
		if send != "" {
			if _, err := io.WriteString(nc, send); err != nil {
				return "", err
			}
		}
		l, err := reply()
		if err != nil {
			return l, err
		}
		if !strings.HasPrefix(l, want) {
			return l, fmt.Errorf("after %.40q got %q, want %s", send, l, want)
		}
		return l, nil
	}
	for _, s := range [][2]string{{"", "220"}, {"EHLO load.test\r\n", "250"}, {"MAIL FROM:<load@test>\r\n", "250"}, {"RCPT TO:<user@test>\r\n", "250"}, {"DATA\r\n", "354"}} {
		if l, err := step(s[0], s[1]); err != nil {
			return smtpResult{reply: l, err: err}
		}
	}
	l, err := step(data+".\r\n", "")
	if err != nil {
		return smtpResult{reply: l, err: err}
	}
	res := smtpResult{reply: l}
	if m := queuedRe.FindStringSubmatch(l); m != nil {
		res.id = m[1]
	}
	io.WriteString(nc, "QUIT\r\n")
	return res
}

// pop3Messages logs in to addr as user and returns every message of the
// maildrop by UIDL (RETR's content, the dot-stuffing undone), then QUITs
// deleting nothing.
func pop3Messages(t *testing.T, addr string) map[string]string {
	t.Helper()
	c := loginWhenFree(t, addr, "user", "pass")
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	out := map[string]string{}
	var order [][2]string
	for _, l := range c.Multiline() {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Fatalf("UIDL line %q", l)
		}
		order = append(order, [2]string{f[0], f[1]})
	}
	for _, n := range order {
		c.Send("RETR " + n[0] + "\r\n")
		c.Expect("+OK*")
		out[n[1]] = c.MultilineText()
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	return out
}

// pop3UIDLs returns the UIDL listing (ids) of user's maildrop on addr, or
// the error line of a login that failed.
func pop3UIDLs(t *testing.T, addr string) (ids map[string]bool, errLine string) {
	t.Helper()
	c := testsupport.Dial(t, addr)
	defer c.Close()
	c.Expect("+OK*")
	c.Send("USER user\r\nPASS pass\r\n")
	c.Expect("+OK*")
	if l := c.Line(); !strings.HasPrefix(l, "+OK") {
		return nil, l
	}
	c.Send("UIDL\r\n")
	c.Expect("+OK*")
	ids = map[string]bool{}
	for _, l := range c.Multiline() {
		f := strings.Fields(l)
		ids[f[len(f)-1]] = true
	}
	c.Send("QUIT\r\n")
	c.Expect("+OK*")
	return ids, ""
}

// readyz returns /readyz's status and its checks.
func readyz(p *proc) (int, map[string]string, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get("http://" + p.Addr("http") + "/readyz")
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &body)
	if body.Checks == nil {
		body.Checks = map[string]string{"(body)": string(b)}
	}
	return resp.StatusCode, body.Checks, nil
}

// sseEvent is one event of the web API's events stream.
type sseEvent struct {
	name string
	data string
}

// openEvents opens GET /api/v1/events on w and returns a channel of its
// events (closed when the stream ends), once the stream's hello arrived.
func openEvents(t *testing.T, w *webClient) <-chan sseEvent {
	t.Helper()
	req, err := http.NewRequest("GET", w.base+"/api/v1/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req = req.WithContext(ctx)
	hc := &http.Client{Jar: w.hc.Jar} // no timeout: a stream
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		resp.Body.Close()
		t.Fatalf("GET /api/v1/events: %s", resp.Status)
	}
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			l := sc.Text()
			switch {
			case l == "":
				if ev.name != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(l, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(l, "event:"))
			case strings.HasPrefix(l, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(l, "data:"))
			}
		}
	}()
	select {
	case ev, ok := <-ch:
		if !ok || ev.name != "hello" {
			t.Fatalf("events stream began with %+v (open %v), want hello", ev, ok)
		}
	case <-time.After(testsupport.Timeout):
		t.Fatal("no hello on the events stream")
	}
	return ch
}

// imapIdle logs in to addr, SELECTs INBOX and enters IDLE, returning the
// connection (read its untagged responses; end with DONE).
func imapIdle(t *testing.T, addr string) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.IMAPLogin("user", "pass")
	c.IMAP("SELECT INBOX", "OK *")
	c.Send("idle IDLE\r\n")
	c.Expect("+ *")
	return c
}

// expectUntagged reads c's lines until one matches pattern, within d, and
// returns it; lines before it are returned too.
func expectUntagged(t *testing.T, c *testsupport.Conn, pattern string, d time.Duration) (string, []string) {
	t.Helper()
	deadline := time.Now().Add(d)
	var seen []string
	for time.Now().Before(deadline) {
		c.SetReadDeadline(deadline)
		l, err := c.R.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v (seen %q)", pattern, err, seen)
		}
		l = strings.TrimRight(l, "\r\n")
		if testsupport.Glob(pattern, l) {
			return l, seen
		}
		seen = append(seen, l)
	}
	t.Fatalf("no %q within %v (seen %q)", pattern, d, seen)
	return "", nil
}

// metricSum sums the samples of p's /metrics of the family name whose
// labels contain every one of labels (e.g. `engine="pg"`).
func metricSum(t *testing.T, p *proc, name string, labels ...string) float64 {
	t.Helper()
	var s float64
next:
	for k, v := range testsupport.Scrape(t, "http://"+p.Addr("http")+"/metrics") {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(k, l) {
				continue next
			}
		}
		s += v
	}
	return s
}
