package web

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

type linksJSON struct {
	Links []linkJSON `json:"links"`
}

// multipartMail is a message with a text and an HTML part.
func multipartMail(text, html string) string {
	return "From: app@example.com\r\nTo: user@example.com\r\nSubject: links\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text + "\r\n" +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + html + "\r\n" +
		"--b--\r\n"
}

func TestLinksListsHTMLAndTextLinksDeduplicatedInOrder(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.client()
	text := "Confirm at https://app.test/confirm?t=1. Or see (https://app.test/help).\r\nAgain: https://app.test/confirm?t=1"
	html := `<p><a href=3D"https://app.test/confirm?t=3D1&amp;x=3D2">go</a>` +
		`<img src=3D"https://cdn.test/logo.png" srcset=3D"https://cdn.test/a.png 1x, https://cdn.test/b.png 2x">` +
		`<a href=3D"#top">top</a><img src=3D"data:image/png;base64,AAAA"><a href=3D"mailto:x@app.test">mail</a>` +
		`<area href=3D"https://app.test/map"><a href=3D"https://app.test/help">help again</a></p>`
	id := e.deliver("user", multipartMail(text, html))
	var got linksJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id+"/links", nil, 200, &got)
	want := []linkJSON{
		{URL: "https://app.test/confirm?t=1", Source: "text"},
		{URL: "https://app.test/help", Source: "text"},
		{URL: "https://app.test/confirm?t=1&x=2", Source: "html"},
		{URL: "https://cdn.test/logo.png", Source: "html"},
		{URL: "https://cdn.test/a.png", Source: "html"},
		{URL: "https://cdn.test/b.png", Source: "html"},
		{URL: "mailto:x@app.test", Source: "html"},
		{URL: "https://app.test/map", Source: "html"},
	}
	if len(got.Links) != len(want) {
		t.Fatalf("links = %+v, want %+v", got.Links, want)
	}
	for i := range want {
		if got.Links[i] != want[i] {
			t.Errorf("link %d = %+v, want %+v", i, got.Links[i], want[i])
		}
	}
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id+"/links?check=maybe", nil, 400, nil)
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/nosuch/links", nil, 404, nil)
}

func TestLinksCheck(t *testing.T) {
	// The server outside the allow-list: reached as "localhost", which
	// this test does not allow. It must never be contacted.
	var outsideHits atomic.Int32
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		outsideHits.Add(1)
	}))
	defer outside.Close()
	outsideURL := strings.Replace(outside.URL, "127.0.0.1", "localhost", 1)

	var methods requestLog
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methods.add(r.Method + " " + r.URL.Path)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(200)
		case "/missing":
			http.NotFound(w, r)
		case "/head-refused":
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
			w.WriteHeader(200)
		case "/hop":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/away":
			http.Redirect(w, r, outsideURL+"/phished", http.StatusFound)
		}
	}))
	defer app.Close()

	e := newEnv(t, Options{LinkCheckAllow: []string{"127.0.0.1"}})
	c := e.client()
	text := app.URL + "/ok\r\n" + app.URL + "/missing\r\n" + app.URL + "/head-refused\r\n" +
		app.URL + "/hop\r\n" + app.URL + "/away\r\n" + outsideURL + "/direct\r\nftp://files.test/x\r\n"
	id := e.deliver("user", simple("app@example.com", "user@example.com", "check", text))
	var got linksJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id+"/links?check=1", nil, 200, &got)
	byURL := map[string]linkJSON{}
	for _, l := range got.Links {
		byURL[l.URL] = l
	}
	for u, want := range map[string]linkJSON{
		app.URL + "/ok":           {Status: 200},
		app.URL + "/missing":      {Status: 404},
		app.URL + "/head-refused": {Status: 200},
		app.URL + "/hop":          {Status: 200, FinalURL: app.URL + "/ok"},
		app.URL + "/away":         {Status: 302, Error: "redirect to a host not allowed: " + outsideURL + "/phished"},
		outsideURL + "/direct":    {Skipped: "host not allowed"},
		"ftp://files.test/x":      {Skipped: "not an http or https URL"},
	} {
		l, ok := byURL[u]
		want.URL, want.Source = u, "text"
		if !ok || l != want {
			t.Errorf("%s: %+v, want %+v", u, l, want)
		}
	}
	if n := outsideHits.Load(); n != 0 {
		t.Errorf("the host not allowed was contacted %d times", n)
	}
	if !methods.has("HEAD /head-refused") || !methods.has("GET /head-refused") || !methods.has("HEAD /ok") || methods.has("GET /ok") {
		t.Errorf("requests = %v, want HEAD everywhere and GET only after 405", methods.list())
	}
}

func TestLinksCheckDefaultAllowsNoHost(t *testing.T) {
	var hits atomic.Int32
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer app.Close()
	e := newEnv(t, Options{}) // LinkCheckAllow nil: nothing may be fetched
	c := e.client()
	id := e.deliver("user", simple("app@example.com", "user@example.com", "check", app.URL+"/x"))
	var got linksJSON
	c.mustJSON("GET", "/api/v1/mailboxes/user/messages/"+id+"/links?check=1", nil, 200, &got)
	if len(got.Links) != 1 || got.Links[0].Skipped != "host not allowed" || hits.Load() != 0 {
		t.Fatalf("links = %+v, hits %d", got.Links, hits.Load())
	}
}

// requestLog is a list of strings safe for concurrent use.
type requestLog struct {
	mu sync.Mutex
	l  []string
}

func (s *requestLog) add(v string) { s.mu.Lock(); s.l = append(s.l, v); s.mu.Unlock() }

func (s *requestLog) has(v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.l, v)
}

func (s *requestLog) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.l)
}
