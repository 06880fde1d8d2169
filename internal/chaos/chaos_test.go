package chaos

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/smtp"
	"postoffice/internal/testsupport"
)

// sink is a Backend that accepts everything and keeps the messages.
type sink struct {
	mu   sync.Mutex
	msgs []string
}

func (b *sink) Mail(context.Context, *smtp.Envelope) error         { return nil }
func (b *sink) Rcpt(context.Context, *smtp.Envelope, string) error { return nil }
func (b *sink) Authenticate(context.Context, smtp.ConnInfo, string, string) error {
	return smtp.ErrAuthFailed
}
func (b *sink) Data(_ context.Context, _ *smtp.Envelope, r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msgs = append(b.msgs, string(data))
	return "Q" + string(rune('0'+len(b.msgs))), nil
}

func (b *sink) count() int { b.mu.Lock(); defer b.mu.Unlock(); return len(b.msgs) }

// counts records Counted calls.
type counts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *counts) add(stage, action string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[stage+"/"+action]++
}

func (c *counts) get(k string) int { c.mu.Lock(); defer c.mu.Unlock(); return c.m[k] }

// serve starts an SMTP server on loopback with e as its Policy.
func serve(t *testing.T, e *Engine) (string, *sink) {
	t.Helper()
	be := &sink{}
	srv := &smtp.Server{Hostname: "mx.test", Backend: be, Policy: e, Logger: slog.New(slog.DiscardHandler)}
	return testsupport.Serve(t, srv, smtp.ErrServerClosed), be
}

func rules(t *testing.T, js string) *Config {
	t.Helper()
	c, err := ParseJSON([]byte(js))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return c
}

func TestValidate(t *testing.T) {
	for _, c := range []struct{ js, want string }{
		{`{"rules":[{"stage":"rcpt","action":"reply","code":550,"enhanced":"5.1.1"}]}`, ""},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":250}]}`, "want a failure reply"},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":600}]}`, "want a failure reply"},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":570}]}`, "second digit"},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":550,"enhanced":"4.1.1"}]}`, "class must be 5"},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":450,"enhanced":"4.1"}]}`, "class.subject.detail"},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":450,"enhanced":"4.1.1234"}]}`, "class.subject.detail"},
		{`{"rules":[{"stage":"connect","action":"reply","code":550}]}`, "only 421 or 554"},
		{`{"rules":[{"stage":"connect","action":"reply","code":554}]}`, ""},
		{`{"rules":[{"stage":"rcpt","action":"reply","code":550,"text":"bad\u0001"}]}`, "printable ASCII"},
		{`{"rules":[{"stage":"quit","action":"drop"}]}`, "stage \"quit\""},
		{`{"rules":[{"stage":"mail","action":"explode"}]}`, "action \"explode\""},
		{`{"rules":[{"stage":"mail","action":"drop","probability":0}]}`, "probability 0"},
		{`{"rules":[{"stage":"mail","action":"drop","probability":1.5}]}`, "probability 1.5"},
		{`{"rules":[{"stage":"mail","action":"drop","code":550}]}`, "for action reply"},
		{`{"rules":[{"stage":"mail","action":"delay"}]}`, "delay \"\""},
		{`{"rules":[{"stage":"mail","action":"delay","delay":"11m"}]}`, "at most"},
		{`{"rules":[{"stage":"mail","action":"reply","code":451,"delay":"1s"}]}`, "delay is for action delay"},
		{`{"rate":{"per_second":0}}`, "per_second"},
		{`{"rules":[],"unknown":1}`, "unknown field"},
		{`{"rules":[{"stage":"mail","action":"drop"}]} {}`, "more than one"},
		{`[`, "bad JSON"},
	} {
		_, err := ParseJSON([]byte(c.js))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.js, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want %q", c.js, err, c.want)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*@bounce.test", "x@bounce.test", true},
		{"*@bounce.test", "X@Bounce.Test", true},
		{"*@bounce.test", "x@bounce.test.org", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"127.0.0.*", "127.0.0.1", true},
	} {
		if got := match(c.p, c.s); got != c.want {
			t.Errorf("match(%q, %q) = %v", c.p, c.s, got)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(`seed = 9
[[rule]]
stage = "rcpt"
match = "*@bounce.test"
action = "reply"
code = 550
enhanced = "5.1.1"
text = "mailbox unavailable (chaos)"

[[rule]]
stage = "ehlo"
action = "delay"
delay = "10ms"
probability = 0.5

[rate]
per_second = 5
`), 0o600)
	c, err := LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Seed != 9 || len(c.Rules) != 2 || c.Rules[0].err.Error() != "550 5.1.1 mailbox unavailable (chaos)" || c.Rules[1].delay != 10*time.Millisecond || c.Rate.PerSecond != 5 {
		t.Fatalf("%+v", c)
	}
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[rule]]\nstage = \"rcpt\"\naction = \"reply\"\ncode = 550\ncolour = \"red\"\n"), 0o600)
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown key: %v", err)
	}
	os.WriteFile(bad, []byte("[[rule]]\nstage = \"rcpt\"\naction = \"reply\"\ncode = 250\n"), 0o600)
	if _, err := LoadFile(bad); err == nil || !strings.Contains(err.Error(), "rule 1: code 250") {
		t.Fatalf("bad code: %v", err)
	}
}

// TestSeedRepeats: with the same seed, a probabilistic rule hits the same
// commands; the seed drawn without one is shown and repeats the run too.
func TestSeedRepeats(t *testing.T) {
	run := func(c *Config) string {
		e := &Engine{}
		e.Set(c, "api")
		var b strings.Builder
		for range 64 {
			if e.Check(context.Background(), smtp.PolicyQuery{Stage: smtp.StageRcpt, Arg: "a@b"}) != nil {
				b.WriteByte('x')
			} else {
				b.WriteByte('.')
			}
		}
		return b.String()
	}
	js := `{"seed":42,"rules":[{"stage":"rcpt","action":"reply","code":451,"probability":0.5}]}`
	a, b := run(rules(t, js)), run(rules(t, js))
	if a != b || !strings.Contains(a, "x") || !strings.Contains(a, ".") {
		t.Fatalf("seed 42: %s / %s", a, b)
	}
	if c := run(rules(t, strings.Replace(js, "42", "43", 1))); c == a {
		t.Fatalf("seeds 42 and 43 gave the same draws %s", c)
	}
	e := &Engine{}
	e.Set(rules(t, `{"rules":[{"stage":"rcpt","action":"reply","code":451,"probability":0.5}]}`), "api")
	seed := e.View().Seed
	if seed == 0 {
		t.Fatal("no seed shown")
	}
	r1 := run(&Config{Seed: seed, Rules: e.View().Rules})
	r2 := run(&Config{Seed: seed, Rules: e.View().Rules})
	if r1 != r2 {
		t.Fatal("shown seed does not repeat")
	}
}

// fakeClock is the rate limit's clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestRateLimitOverSocket: with per_second = 2, the third MAIL from one
// address within a second gets 421 4.7.0 and the connection closes; other
// addresses have their own count; a second later MAIL goes through again.
func TestRateLimitOverSocket(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	cnt := &counts{}
	e := &Engine{Now: clk.now, Counted: cnt.add}
	e.Set(rules(t, `{"rate":{"per_second":2}}`), "api")
	addr, _ := serve(t, e)
	mail := func(local string) string {
		t.Helper()
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c := testsupport.NewConn(t, nc)
		defer c.Close()
		c.ExpectReply("220 *")
		c.Cmd("EHLO c", "250 *")
		r := c.Cmd("MAIL FROM:<a@b>", "*").Last()
		if strings.HasPrefix(r, "421 ") {
			c.ExpectClosed()
		}
		return r[:9]
	}
	var got []string
	for range 5 {
		got = append(got, mail("127.0.0.1"))
	}
	want := []string{"250 2.1.0", "250 2.1.0", "421 4.7.0", "421 4.7.0", "421 4.7.0"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("replies %v, want %v", got, want)
	}
	if r := mail("127.0.0.2"); r != "250 2.1.0" {
		t.Fatalf("another address: %s", r)
	}
	clk.advance(time.Second)
	if r := mail("127.0.0.1"); r != "250 2.1.0" {
		t.Fatalf("a second later: %s", r)
	}
	if n := cnt.get("mail/rate_limit"); n != 3 {
		t.Fatalf("counted %d rate limits", n)
	}
}

// dial connects to addr and reads the greeting matching greeting.
func dial(t *testing.T, addr, greeting string) *testsupport.Conn {
	t.Helper()
	c := testsupport.Dial(t, addr)
	c.ConnID = true // error replies name the connection; the patterns leave it out
	c.ExpectReply(greeting)
	return c
}

// TestStagesOverSocket: every stage and action as a client sees them over
// TCP.
func TestStagesOverSocket(t *testing.T) {
	cnt := &counts{}
	e := &Engine{Counted: cnt.add}
	addr, be := serve(t, e)
	set := func(js string) { t.Helper(); e.Set(rules(t, js), "api") }

	// connect: 554 instead of the greeting, then 503 to all but QUIT
	// (RFC 5321 §3.1).
	set(`{"rules":[{"stage":"connect","match":"127.0.0.*","action":"reply","code":554,"enhanced":"5.7.1","text":"go away"}]}`)
	c := dial(t, addr, "554 5.7.1 go away (conn *)")
	c.Cmd("EHLO c", "503 5.5.1 *")
	c.Cmd("MAIL FROM:<a@b>", "503 5.5.1 *")
	c.Cmd("QUIT", "221 *")
	c.ExpectClosed()
	// connect 421 closes; connect drop closes without a word.
	set(`{"rules":[{"stage":"connect","action":"reply","code":421,"text":"busy"}]}`)
	dial(t, addr, "421 busy (conn *)").ExpectClosed()
	set(`{"rules":[{"stage":"connect","action":"drop"}]}`)
	testsupport.Dial(t, addr).ExpectClosed()
	// A rule that does not match the client IP changes nothing.
	set(`{"rules":[{"stage":"connect","match":"10.*","action":"drop"}]}`)
	dial(t, addr, "220 *").Cmd("QUIT", "221 *")

	// ehlo: on the HELO name.
	set(`{"rules":[{"stage":"ehlo","match":"bad.*","action":"reply","code":550,"enhanced":"5.7.1","text":"no"}]}`)
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO bad.example", "550 5.7.1 no")
	c.Cmd("HELO bad.example", "550 5.7.1 no")
	c.Cmd("EHLO good.example", "250 *")
	c.Cmd("QUIT", "221 *")

	// mail: a reply; a 421 closes (RFC 5321 §3.8); a drop closes silently.
	set(`{"rules":[{"stage":"mail","match":"temp@*","action":"reply","code":451,"enhanced":"4.3.0"},{"stage":"mail","match":"gone@*","action":"reply","code":421,"enhanced":"4.3.2","text":"bye"},{"stage":"mail","match":"drop@*","action":"drop"}]}`)
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<temp@x>", "451 4.3.0 Error (chaos)")
	c.Cmd("MAIL FROM:<ok@x>", "250 2.1.0 Ok") // the refused MAIL left no transaction
	c.Cmd("RSET", "250 *")
	c.Cmd("MAIL FROM:<gone@x>", "421 4.3.2 bye")
	c.ExpectClosed()
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Send("MAIL FROM:<drop@x>\r\n")
	c.ExpectClosed()

	// rcpt: the deterministic rule; other recipients are accepted.
	set(`{"rules":[{"stage":"rcpt","match":"*@bounce.test","action":"reply","code":550,"enhanced":"5.1.1","text":"mailbox unavailable (chaos)"}]}`)
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	c.Cmd("RCPT TO:<someone@bounce.test>", "550 5.1.1 mailbox unavailable (chaos)")
	c.Cmd("RCPT TO:<someone@ok.test>", "250 2.1.5 Ok")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.ExpectReply("250 2.0.0 Ok: queued as *")
	c.Cmd("QUIT", "221 *")

	// data: at the DATA command, before 354; the transaction ends.
	set(`{"rules":[{"stage":"data","action":"reply","code":554,"enhanced":"5.3.0","text":"no data today"}]}`)
	stored := be.count()
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	c.Cmd("RCPT TO:<b@y>", "250 *")
	c.Cmd("DATA", "554 5.3.0 no data today")
	c.Cmd("MAIL FROM:<a@x>", "250 *") // not a nested MAIL
	c.Cmd("RCPT TO:<b@y>", "250 *")
	// and at the first BDAT chunk: its octets are read and dropped.
	c.Send("BDAT 6 LAST\r\nhello\n")
	c.ExpectReply("554 5.3.0 no data today")
	c.Cmd("NOOP", "250 *")
	c.Cmd("QUIT", "221 *")

	// message: after the content, before 250; nothing is stored.
	set(`{"rules":[{"stage":"message","match":"*@fail.test","action":"reply","code":451,"enhanced":"4.3.0","text":"disk on fire"},{"stage":"message","match":"*@drop.test","action":"drop"}]}`)
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	c.Cmd("RCPT TO:<b@fail.test>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.ExpectReply("451 4.3.0 disk on fire")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	c.Cmd("RCPT TO:<b@fail.test>", "250 *")
	c.Send("BDAT 5\r\nhello")
	c.ExpectReply("250 *")
	c.Send("BDAT 7 LAST\r\n world\n")
	c.ExpectReply("451 4.3.0 disk on fire")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	c.Cmd("RCPT TO:<b@drop.test>", "250 *")
	c.Cmd("DATA", "354 *")
	c.Send("Subject: x\r\n\r\nbody\r\n.\r\n")
	c.ExpectClosed()
	if n := be.count(); n != stored {
		t.Fatalf("%d messages stored by refused transactions", n-stored)
	}

	// delay: then the usual answer.
	set(`{"rules":[{"stage":"rcpt","action":"delay","delay":"150ms"}]}`)
	c = dial(t, addr, "220 *")
	c.Cmd("EHLO c", "250 *")
	c.Cmd("MAIL FROM:<a@x>", "250 *")
	start := time.Now()
	c.Cmd("RCPT TO:<b@y>", "250 2.1.5 Ok")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("RCPT answered after %s, before the delay", d)
	}
	c.Cmd("QUIT", "221 *")

	for k, want := range map[string]int{"connect/reply": 2, "connect/drop": 1, "ehlo/reply": 2, "mail/reply": 2, "mail/drop": 1,
		"rcpt/reply": 1, "data/reply": 2, "message/reply": 2, "message/drop": 1, "rcpt/delay": 1} {
		if got := cnt.get(k); got != want {
			t.Errorf("counted %s %d times, want %d", k, got, want)
		}
	}
}

// TestClearedRulesCostNothing: with the rules cleared the Engine answers
// nil at every stage.
func TestClearedRulesCostNothing(t *testing.T) {
	e := &Engine{}
	e.Set(rules(t, `{"rules":[{"stage":"mail","action":"drop"}]}`), "api")
	if e.Check(context.Background(), smtp.PolicyQuery{Stage: smtp.StageMail}) == nil {
		t.Fatal("rule not in force")
	}
	e.Clear()
	for _, st := range []smtp.Stage{smtp.StageConnect, smtp.StageHelo, smtp.StageMail, smtp.StageRcpt, smtp.StageData, smtp.StageMessage} {
		if err := e.Check(context.Background(), smtp.PolicyQuery{Stage: st}); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if v := e.View(); v.Enabled || len(v.Rules) != 0 {
		t.Fatalf("view %+v", v)
	}
}

// TestNoRulesNoAllocations: without rules a stage check allocates nothing
// (it is one atomic load).
func TestNoRulesNoAllocations(t *testing.T) {
	e := &Engine{}
	q := smtp.PolicyQuery{Stage: smtp.StageRcpt, Arg: "a@b"}
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _ = e.Check(ctx, q) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
	}
}
