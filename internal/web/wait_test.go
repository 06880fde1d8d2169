package web

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/testsupport"
)

// waitResult is the answer of one wait request.
type waitResult struct {
	code  int
	close bool // the server asked to close the connection
	msg   messageJSON
	err   string
	body  string
}

// wait sends GET .../messages/wait with the given parameters.
func (c *client) wait(ctx context.Context, mailbox string, params url.Values) waitResult {
	c.e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", c.e.srv.URL+"/api/v1/mailboxes/"+mailbox+"/messages/wait?"+params.Encode(), nil)
	if err != nil {
		c.e.t.Error(err)
		return waitResult{}
	}
	hc := *c.hc
	hc.Timeout = 0 // the request's context bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return waitResult{err: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := waitResult{code: resp.StatusCode, close: resp.Close, body: string(b)}
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &r.msg); err != nil {
			c.e.t.Errorf("wait answer %s: %v", b, err)
		}
	} else {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			c.e.t.Errorf("wait error answer %q is not {\"error\": ...}", b)
		}
		r.err = e.Error
	}
	return r
}

// hookWaits makes every wait of e report its steps on the returned
// channels: one value on idle each time a wait blocks for an arrival, one
// on done when a wait's handler returns. Call before the first request.
func hookWaits(e *env) (idle, done chan struct{}) {
	idle, done = make(chan struct{}, 100), make(chan struct{}, 100)
	e.h.waitHook = func(step string) {
		switch step {
		case "idle":
			idle <- struct{}{}
		case "done":
			done <- struct{}{}
		}
	}
	return idle, done
}

// receive waits for a value of ch, failing the test after
// testsupport.Timeout.
func receive(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testsupport.Timeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func tagged(tag, subject string) string {
	return simple("app@example.com", "test+"+tag+"@example.com", subject, "hello")
}

func TestWaitReturnsMessageDeliveredTenMillisecondsAfterTheCall(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	var id string
	deliverd := make(chan struct{})
	time.AfterFunc(10*time.Millisecond, func() {
		id = e.deliver("user", tagged("late", "the late one"))
		close(deliverd)
	})
	r := c.wait(context.Background(), "user", url.Values{"q": {"tag:late"}, "timeout": {"20s"}})
	<-deliverd
	if r.code != 200 || r.msg.ID != id || r.msg.Subject != "the late one" || r.msg.Text == "" {
		t.Fatalf("wait = %d %+v %s, want 200 with message %s", r.code, r.msg.summaryJSON, r.err, id)
	}
}

func TestWaitWakesOnArrivalAfterItLooked(t *testing.T) {
	e := newEnv(t, Options{})
	idle, _ := hookWaits(e)
	c := e.client()
	e.deliver("user", tagged("other", "not this one"))
	got := make(chan waitResult, 1)
	go func() { got <- c.wait(context.Background(), "user", url.Values{"q": {"tag:wake"}, "timeout": {"20s"}}) }()
	receive(t, idle, "the wait to block") // it looked and found nothing
	id := e.deliver("user", tagged("wake", "this one"))
	r := <-got
	if r.code != 200 || r.msg.ID != id {
		t.Fatalf("wait = %d %+v %s, want 200 with %s", r.code, r.msg.summaryJSON, r.err, id)
	}
}

func TestWaitAfterFirstResultFindsMessageDeliveredBetweenCalls(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	first := e.deliver("user", tagged("seq", "first"))
	r1 := c.wait(context.Background(), "user", url.Values{"q": {"tag:seq"}, "timeout": {"5s"}})
	if r1.code != 200 || r1.msg.ID != first {
		t.Fatalf("first wait = %d %s %s, want %s", r1.code, r1.msg.ID, r1.err, first)
	}
	// Between the two calls: no client is waiting when it lands.
	second := e.deliver("user", tagged("seq", "second"))
	r2 := c.wait(context.Background(), "user", url.Values{"q": {"tag:seq"}, "after": {r1.msg.ID}, "timeout": {"5s"}})
	if r2.code != 200 || r2.msg.ID != second {
		t.Fatalf("second wait = %d %s %s, want %s", r2.code, r2.msg.ID, r2.err, second)
	}
	// Nothing after the second.
	r3 := c.wait(context.Background(), "user", url.Values{"q": {"tag:seq"}, "after": {second}, "timeout": {"0s"}})
	if r3.code != http.StatusRequestTimeout {
		t.Fatalf("third wait = %d %s, want 408", r3.code, r3.body)
	}
	// Without a marker, the first in arrival order.
	r4 := c.wait(context.Background(), "user", url.Values{"q": {"tag:seq"}, "timeout": {"0"}})
	if r4.code != 200 || r4.msg.ID != first {
		t.Fatalf("wait without marker = %d %s, want %s", r4.code, r4.msg.ID, first)
	}
}

func TestWaitAfterDeletedMarkerUsesItsArrivalTime(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	old := e.deliver("user", tagged("del", "old"))
	marker := e.deliver("user", tagged("del", "marker"))
	if _, err := e.h.mail.Delete("user", []string{marker}); err != nil {
		t.Fatal(err)
	}
	next := e.deliver("user", tagged("del", "next"))
	r := c.wait(context.Background(), "user", url.Values{"q": {"tag:del"}, "after": {marker}, "timeout": {"5s"}})
	if r.code != 200 || r.msg.ID != next {
		t.Fatalf("wait after a deleted marker = %d %s %s, want %s (not %s)", r.code, r.msg.ID, r.err, next, old)
	}
}

func TestWaitAfterTime(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	e.deliver("user", tagged("time", "before the mark"))
	mark := time.Now().UTC()
	after := e.deliver("user", tagged("time", "after the mark"))
	r := c.wait(context.Background(), "user", url.Values{"q": {"tag:time"}, "after": {mark.Format(time.RFC3339Nano)}, "timeout": {"5s"}})
	if r.code != 200 || r.msg.ID != after {
		t.Fatalf("wait after %s = %d %s %s, want %s", mark, r.code, r.msg.ID, r.err, after)
	}
}

func TestWaitTwentyConcurrentWaitersEachGetTheirOwnMessage(t *testing.T) {
	e := newEnv(t, Options{})
	idle, _ := hookWaits(e)
	c := e.client()
	const n = 20
	results := make([]waitResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.wait(context.Background(), "user", url.Values{"q": {fmt.Sprintf("tag:w%d", i)}, "timeout": {"30s"}})
		}()
	}
	for range n {
		receive(t, idle, "every waiter to block")
	}
	ids := make([]string, n)
	var dwg sync.WaitGroup
	for i := n - 1; i >= 0; i-- {
		dwg.Add(1)
		go func() {
			defer dwg.Done()
			ids[i] = e.deliver("user", tagged(fmt.Sprintf("w%d", i), fmt.Sprintf("for waiter %d", i)))
		}()
	}
	dwg.Wait()
	wg.Wait()
	for i, r := range results {
		if r.code != 200 || r.msg.ID != ids[i] || r.msg.Subject != fmt.Sprintf("for waiter %d", i) {
			t.Errorf("waiter %d = %d %q %s, want %s", i, r.code, r.msg.Subject, r.err, ids[i])
		}
	}
}

func TestWaitTimeoutIs408JSON(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	r := c.wait(context.Background(), "user", url.Values{"q": {"tag:never"}, "timeout": {"50ms"}})
	if r.code != http.StatusRequestTimeout || !strings.Contains(r.err, "no matching message") || !r.close {
		t.Fatalf("wait = %d %s (close %v), want 408 JSON with Connection: close", r.code, r.body, r.close)
	}
}

func TestWaitTimeoutCappedByWaitMax(t *testing.T) {
	e := newEnv(t, Options{WaitMax: 100 * time.Millisecond})
	c := e.client()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Timeout)
	defer cancel()
	r := c.wait(ctx, "user", url.Values{"timeout": {"1h"}})
	if r.code != http.StatusRequestTimeout || !strings.Contains(r.err, "100ms") {
		t.Fatalf("wait = %d %s, want 408 after the 100ms cap", r.code, r.body)
	}
}

func TestWaitBadParameters(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	e.deliver("user", tagged("x", "x"))
	for _, tc := range []struct {
		params url.Values
		code   int
		want   string
	}{
		{url.Values{"q": {"nosuchfield:x"}}, 400, "q:"},
		{url.Values{"q": {"is:maybe"}}, 400, "q:"},
		{url.Values{"after": {"not/an/id"}}, 400, "after:"},
		{url.Values{"timeout": {"soon"}}, 400, "timeout:"},
		{url.Values{"timeout": {"-1s"}}, 400, "timeout:"},
		{url.Values{"after": {"foreign-id-that-is-not-here"}}, 404, "after:"},
	} {
		r := c.wait(context.Background(), "user", tc.params)
		if r.code != tc.code || !strings.HasPrefix(r.err, tc.want) {
			t.Errorf("wait %v = %d %s, want %d %s...", tc.params, r.code, r.body, tc.code, tc.want)
		}
	}
	// The server is still up and answers.
	var l listJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages", nil, 200, &l)
}

func TestWaitEndsWhenClientCancels(t *testing.T) {
	e := newEnv(t, Options{})
	idle, done := hookWaits(e)
	c := e.client()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan waitResult, 1)
	go func() { got <- c.wait(ctx, "user", url.Values{"q": {"tag:never"}, "timeout": {"5m"}}) }()
	receive(t, idle, "the wait to block")
	cancel()
	receive(t, done, "the wait handler to return after the client cancelled")
	if r := <-got; r.err == "" || r.code != 0 {
		t.Fatalf("cancelled wait = %+v, want a client error", r)
	}
}

func TestLatest(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/latest", nil, 404, nil)
	a := e.deliver("user", tagged("la", "first a"))
	b := e.deliver("user", tagged("lb", "only b"))
	a2 := e.deliver("user", tagged("la", "second a"))
	var m messageJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/latest", nil, 200, &m)
	if m.ID != a2 {
		t.Fatalf("latest = %s, want %s", m.ID, a2)
	}
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/latest?q=tag:lb", nil, 200, &m)
	if m.ID != b || m.Subject != "only b" {
		t.Fatalf("latest tag:lb = %s, want %s", m.ID, b)
	}
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/latest?q=tag:none", nil, 404, nil)
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/latest?q=bad:field", nil, 400, nil)
	_ = a
}
