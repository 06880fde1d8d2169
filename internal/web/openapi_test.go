package web_test

// The contract test: every request and answer of every endpoint under
// /api/v1/, made against whole servers over real sockets (SMTP delivery
// into a real Maildir, POP3 for the lock), is validated against
// openapi.json with libopenapi-validator (OpenAPI 3.1, JSON Schema
// 2020-12). The API routes registered in this package (web.go) and in
// internal/server must match the document's operations both ways, and
// every documented operation needs a successful case below.
//
// Adding an endpoint: its route, its path in openapi.json (the shared
// error answers are components/responses, the shared parameters
// components/parameters), and rows in contractCases: one with its 2xx
// answer, and one for each error it documents that a test can provoke,
// marked invalid when the document itself forbids the request.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/smtp"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
	liberrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"
	"golang.org/x/crypto/bcrypt"

	"postoffice/internal/auth"
	pconfig "postoffice/internal/config"
	"postoffice/internal/server"
	"postoffice/internal/testsupport"
)

// contract is the document, parsed, and a validator over it.
type contract struct {
	raw   []byte
	model *v3.Document
	v     validator.Validator
}

func loadContract(t *testing.T) *contract {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("openapi.json: %v", errs)
	}
	return &contract{raw: raw, model: &m.Model, v: v}
}

// operations returns "METHOD /path" of every operation in the document.
func (c *contract) operations() []string {
	var ops []string
	for path, item := range c.model.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(ops)
	return ops
}

// problems renders validation errors for a failure message.
func problems(errs []*liberrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "\n  - %s: %s", e.Message, e.Reason)
		for _, s := range e.SchemaValidationErrors {
			fmt.Fprintf(&b, "\n      %s at %s (%s)", s.Reason, s.FieldPath, s.KeywordLocation)
		}
	}
	return b.String()
}

// TestOpenAPIDocumentValid checks the document against the OpenAPI 3.1
// schema itself.
func TestOpenAPIDocumentValid(t *testing.T) {
	c := loadContract(t)
	if c.model.Version != "3.1.0" {
		t.Fatalf("openapi = %q, want 3.1.0", c.model.Version)
	}
	if ok, errs := c.v.ValidateDocument(); !ok {
		t.Fatalf("openapi.json is not a valid OpenAPI 3.1 document:%s", problems(errs))
	}
}

// routeDirs are the packages whose source registers routes on the HTTP
// listener: this one (the web inbox and its API) and internal/server (the
// listener's own mux).
var routeDirs = []string{".", "../server"}

// apiRoutes reads the "METHOD /api/..." patterns registered with
// HandleFunc or Handle in the source files of routeDirs.
func apiRoutes(t *testing.T) []string {
	t.Helper()
	var routes []string
	for _, dir := range routeDirs {
		routes = append(routes, packageRoutes(t, dir)...)
	}
	slices.Sort(routes)
	return routes
}

// packageRoutes reads the API routes of the package in dir. A pattern
// must be a constant expression (string literals and the package's
// constants joined by +), so that this test can read it.
func packageRoutes(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var parsed []*ast.File
	consts := map[string]ast.Expr{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
		ast.Inspect(f, func(n ast.Node) bool {
			if d, ok := n.(*ast.GenDecl); ok && d.Tok == token.CONST {
				for _, s := range d.Specs {
					vs := s.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if i < len(vs.Values) {
							consts[id.Name] = vs.Values[i]
						}
					}
				}
			}
			return true
		})
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return eval(v)
			}
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X)
				b, ok2 := eval(e.Y)
				return a + b, ok1 && ok2
			}
		}
		return "", false
	}
	var routes []string
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "HandleFunc" && sel.Sel.Name != "Handle" {
				return true
			}
			pattern, ok := eval(call.Args[0])
			if !ok {
				t.Errorf("%s: route pattern is not a constant expression; write it as string literals and constants", fset.Position(call.Pos()))
				return true
			}
			if method, path, ok := strings.Cut(pattern, " "); ok && strings.HasPrefix(path, "/api/") {
				routes = append(routes, method+" "+path)
			} else if strings.HasPrefix(pattern, "/api/") {
				t.Errorf("%s: API route %q has no method", fset.Position(call.Pos()), pattern)
			}
			return true
		})
	}
	return routes
}

// TestOpenAPIRoutesMatch fails when an API route of the web handler has
// no operation in the document, or the document one that the handler does
// not serve.
func TestOpenAPIRoutesMatch(t *testing.T) {
	c := loadContract(t)
	routes := apiRoutes(t)
	if len(routes) < 10 {
		t.Fatalf("read only %d API routes from the source: %v", len(routes), routes)
	}
	ops := c.operations()
	for _, r := range routes {
		if !slices.Contains(ops, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, op := range ops {
		if !slices.Contains(routes, op) {
			t.Errorf("openapi.json has %s, which no route serves", op)
		}
	}
}

// apiServer is a whole Postoffice: SMTP, POP3 and HTTP on loopback.
type apiServer struct {
	s    *server.Server
	base string
}

func startAPIServer(t *testing.T, edit func(*pconfig.Config)) *apiServer {
	t.Helper()
	cfg := testsupport.Config(t)
	cfg.IMAPAddr = ""
	if edit != nil {
		edit(&cfg)
	}
	s := testsupport.StartServer(t, cfg, server.New)
	return &apiServer{s: s, base: "http://" + s.Listener("http").Addr().String()}
}

// send delivers msg over SMTP.
func (a *apiServer) send(t *testing.T, from string, to []string, msg string) {
	t.Helper()
	if err := smtp.SendMail(a.s.Listener("smtp").Addr().String(), nil, from, to, []byte(msg)); err != nil {
		t.Fatalf("SMTP: %v", err)
	}
}

// apiClient is a browser whose every exchange is validated: a cookie jar
// kept by hand (so that the request validated is the one sent) and the
// session's CSRF token.
type apiClient struct {
	t    *testing.T
	c    *contract
	base *url.URL
	jar  *cookiejar.Jar
	hc   *http.Client
	csrf string
}

func (a *apiServer) client(t *testing.T, c *contract) *apiClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(a.base)
	cl := &apiClient{t: t, c: c, base: u, jar: jar, hc: &http.Client{Timeout: testsupport.Timeout}}
	cl.refresh()
	return cl
}

// refresh fetches the session's CSRF token.
func (cl *apiClient) refresh() {
	cl.t.Helper()
	ex := cl.do(exchange{method: "GET", path: "/api/v1/session"})
	if ex.resp.StatusCode != 200 {
		cl.t.Fatalf("GET /api/v1/session: %d %s", ex.resp.StatusCode, ex.got)
	}
	var s struct {
		CSRF string `json:"csrf_token"`
	}
	json.Unmarshal(ex.got, &s)
	cl.csrf = s.CSRF
}

// exchange is one request and what came back.
type exchange struct {
	method, path string
	body         string
	ctype        string // Content-Type of body; application/json when empty
	noCSRF       bool   // leave out X-CSRF-Token on a mutation
	host         string // Host header, when not the listener's address
	stream       bool   // an event stream: read its first event only

	req  *http.Request // as sent, with a fresh body for the validator
	resp *http.Response
	got  []byte        // the answer's body (a stream's: its first event)
	sr   *bufio.Reader // a stream's further events
}

func (cl *apiClient) newRequest(ctx context.Context, ex *exchange) *http.Request {
	cl.t.Helper()
	var body io.Reader = http.NoBody
	if ex.body != "" {
		body = strings.NewReader(ex.body)
	}
	req, err := http.NewRequestWithContext(ctx, ex.method, cl.base.String()+ex.path, body)
	if err != nil {
		cl.t.Fatal(err)
	}
	if ex.body != "" {
		ct := ex.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if ex.method != "GET" && !ex.noCSRF && cl.csrf != "" {
		req.Header.Set("X-CSRF-Token", cl.csrf)
	}
	if ex.host != "" {
		req.Host = ex.host
	}
	for _, c := range cl.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	return req
}

// do sends ex and reads the answer.
func (cl *apiClient) do(ex exchange) *exchange {
	cl.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testsupport.Timeout)
	cl.t.Cleanup(cancel)
	req := cl.newRequest(ctx, &ex)
	ex.req = cl.newRequest(ctx, &ex) // an identical one, whose body the validator may read
	resp, err := cl.hc.Do(req)
	if err != nil {
		cl.t.Fatalf("%s %s: %v", ex.method, ex.path, err)
	}
	cl.jar.SetCookies(req.URL, resp.Cookies())
	ex.resp = resp
	if ex.stream && resp.StatusCode == 200 {
		// Up to the end of the first event.
		ex.sr = bufio.NewReader(resp.Body)
		var b bytes.Buffer
		for {
			line, err := ex.sr.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				cl.t.Fatalf("%s %s: reading the stream: %v after %q", ex.method, ex.path, err, b.String())
			}
			if line == "\n" && strings.Contains(b.String(), "data:") {
				break
			}
		}
		ex.got = b.Bytes()
		cl.t.Cleanup(func() { cancel(); resp.Body.Close() })
	} else {
		ex.got, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			cl.t.Fatalf("%s %s: %v", ex.method, ex.path, err)
		}
	}
	return &ex
}

// validate checks ex's request and answer against the document. A
// request that the document should reject (wantInvalid) must be
// rejected by it; its answer must be valid all the same.
func (cl *apiClient) validate(ex *exchange, wantInvalid bool) {
	cl.t.Helper()
	ok, errs := cl.c.v.ValidateHttpRequest(ex.req)
	switch {
	case wantInvalid && ok:
		cl.t.Errorf("%s %s: the document accepts this request, which the server refuses", ex.req.Method, ex.req.URL.RequestURI())
	case !wantInvalid && !ok:
		cl.t.Errorf("%s %s: request does not match the document:%s", ex.req.Method, ex.req.URL.RequestURI(), problems(errs))
	}
	resp := *ex.resp
	resp.Body = io.NopCloser(bytes.NewReader(ex.got))
	if ok, errs := cl.c.v.ValidateHttpResponse(ex.req, &resp); !ok {
		cl.t.Errorf("%s %s: answer %d does not match the document:%s\nbody: %.2000s",
			ex.req.Method, ex.req.URL.RequestURI(), ex.resp.StatusCode, problems(errs), ex.got)
	}
}

// login logs cl in (validated).
func (cl *apiClient) login(user, password string) {
	cl.t.Helper()
	b, _ := json.Marshal(map[string]string{"user": user, "password": password})
	ex := cl.do(exchange{method: "POST", path: "/api/v1/login", body: string(b)})
	cl.validate(ex, false)
	if ex.resp.StatusCode != 200 {
		cl.t.Fatalf("login %s: %d %s", user, ex.resp.StatusCode, ex.got)
	}
	var s struct {
		CSRF string `json:"csrf_token"`
	}
	json.Unmarshal(ex.got, &s)
	cl.csrf = s.CSRF
}

// fixture is the servers and mail the cases run against.
type fixture struct {
	open  *apiServer // no users file: loopback clients need no login
	users *apiServer // a users file with alice and the admin boss
	wild  *apiServer // no users file, HTTP on the wildcard address: chaos refused
	ids   map[string]string
	// links is the web server the links of the links message point to;
	// linkHits counts the requests it answered.
	links    *httptest.Server
	linkHits atomic.Int64
}

// openMaxSize is the open server's --max-message-size, small so that send
// can be made to exceed it.
const openMaxSize = 64 << 10
const (
	plainMsg = "From: Alice <alice@example.org>\r\nTo: user@example.org\r\nCc: Carol <carol@example.org>\r\n" +
		"Subject: contract plain\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\nMessage-ID: <plain@example.org>\r\n\r\n" +
		"Hello, this is plain text.\r\n"
	// richMsg has an HTML body with a cid: image and a remote image, a
	// text alternative, and a PDF attachment: part 1 is the alternative
	// (1.1 text, 1.2 HTML), 2 the image, 3 the PDF.
	richMsg = "From: Bob <bob@example.org>\r\nTo: user@example.org\r\nSubject: =?UTF-8?Q?contract_rich_caf=C3=A9?=\r\n" +
		"Date: Tue, 07 May 2024 09:00:00 +0200\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n" +
		"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the report.\r\n" +
		"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" +
		"<p>See the <b>report</b> <img src=\"cid:logo@x\"> <img src=\"https://tracker.example/p.gif\"><script>alert(1)</script></p>\r\n" +
		"--alt--\r\n" +
		"--outer\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==\r\n" +
		"--outer\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n" +
		"--outer--\r\n"
	// linksMsg has links in a text and an HTML part; LINKS is the base
	// URL of the fixture's link server.
	linksMsg = "From: a@example.org\r\nTo: user@example.org\r\nSubject: contract links\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain\r\n\r\nConfirm: LINKS/ok. Or see https://example.com/docs.\r\n" +
		"--b\r\nContent-Type: text/html\r\n\r\n<p><a href=\"LINKS/moved\">moved</a> <a href=\"LINKS/away\">away</a> " +
		"<a href=\"mailto:help@example.org\">help</a> <a href=\"LINKS/ok\">again</a></p>\r\n" +
		"--b--\r\n"
)

// findID returns the id of the one message in mailbox whose subject has
// word.
func findID(t *testing.T, cl *apiClient, mailbox, word string) string {
	t.Helper()
	ex := cl.do(exchange{method: "GET", path: "/api/v1/mailboxes/" + mailbox + "/messages?q=" + url.QueryEscape("subject:"+word)})
	var l struct {
		Messages []struct{ ID string }
	}
	json.Unmarshal(ex.got, &l)
	if ex.resp.StatusCode != 200 || len(l.Messages) != 1 {
		t.Fatalf("finding %q: %d %s", word, ex.resp.StatusCode, ex.got)
	}
	return l.Messages[0].ID
}

func newFixture(t *testing.T, c *contract) *fixture {
	t.Helper()
	f := &fixture{ids: map[string]string{}}
	f.links = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.linkHits.Add(1)
		switch r.URL.Path {
		case "/ok":
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/away":
			http.Redirect(w, r, "https://elsewhere.example/", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.links.Close)
	usersFile := filepath.Join(t.TempDir(), "users")
	for _, u := range []string{"alice", "boss"} {
		if err := auth.AddUser(usersFile, u, u+"-secret", bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	f.users = startAPIServer(t, func(c *pconfig.Config) { c.UsersFile, c.WebAdmin = usersFile, "boss" })
	// A release target that is down: a port that was free a moment ago.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.ids["down"] = l.Addr().String()
	l.Close()
	f.ids["target"] = f.users.s.Listener("smtp").Addr().String()
	// The open server releases to the users server's SMTP.
	f.open = startAPIServer(t, func(c *pconfig.Config) {
		c.RelayAllow = []string{"*@example.test"}
		c.RelayAddr = f.ids["target"]
		c.RelayAllowAddr = []string{f.ids["down"]}
		c.MaxMessageSize = openMaxSize
	})
	f.wild = startAPIServer(t, func(c *pconfig.Config) { c.HTTPAddr, c.Insecure = "0.0.0.0:0", true })
	_, port, _ := net.SplitHostPort(f.wild.s.Listener("http").Addr().String())
	f.wild.base = "http://127.0.0.1:" + port

	f.open.send(t, "alice@example.org", []string{"user@example.org"}, plainMsg)
	f.open.send(t, "", []string{"user@example.org"}, richMsg) // the null reverse-path
	for _, name := range []string{"del1", "del2", "del3", "locked"} {
		f.open.send(t, "a@example.org", []string{"user@example.org"}, "Subject: contract "+name+"\r\n\r\nx\r\n")
	}
	f.open.send(t, "a@example.org", []string{"user@example.org"}, strings.ReplaceAll(linksMsg, "LINKS", f.links.URL))
	f.users.send(t, "a@example.org", []string{"alice@example.org"}, "Subject: contract alice\r\n\r\nfor alice\r\n")
	cl := f.open.client(t, c)
	for _, name := range []string{"plain", "rich", "del1", "del2", "del3", "locked", "links"} {
		f.ids[name] = findID(t, cl, "user", name)
	}
	boss := f.users.client(t, c)
	boss.login("boss", "boss-secret")
	f.ids["alice"] = findID(t, boss, "alice", "alice")
	return f
}

// expand replaces {{name}} in s with the fixture's ids.
func (f *fixture) expand(s string) string {
	for name, id := range f.ids {
		s = strings.ReplaceAll(s, "{{"+name+"}}", url.PathEscape(id))
	}
	return s
}

// apiCase is one exchange of the contract test.
type apiCase struct {
	name  string
	route string // the documented operation: "METHOD /api/v1/..." as in openapi.json
	path  string // the request path and query; {{name}} is a fixture id
	// on: "open" (no users file, no login), "wild" (the same, HTTP on the
	// wildcard address), or on the users-file server "anon" (no login),
	// "alice" or "boss" (the admin).
	on     string
	body   string
	ctype  string
	noCSRF bool
	host   string
	status int
	// invalid: the request breaks the document (and the server refuses
	// it); the document must reject it too.
	invalid bool
	// before runs first and returns what to do after the exchange.
	before func(t *testing.T, f *fixture) (after func())
	check  func(t *testing.T, f *fixture, ex *exchange)
}

const (
	msgsRoute = "/api/v1/mailboxes/{mailbox}/messages"
	msgRoute  = msgsRoute + "/{id}"
	userMsgs  = "/api/v1/mailboxes/user/messages"
)

// wantJSON decodes the answer into v, failing the test if it cannot.
func wantJSON(t *testing.T, ex *exchange, v any) {
	t.Helper()
	if err := json.Unmarshal(ex.got, v); err != nil {
		t.Fatalf("%v in %s", err, ex.got)
	}
}

// lockByPOP3 logs in to POP3 as user, which locks the mailbox, until the
// returned function quits.
func lockByPOP3(t *testing.T, f *fixture) func() {
	c := testsupport.Dial(t, f.open.s.Listener("pop3").Addr().String())
	c.POP3Login("user", "pass")
	return func() { c.Cmd("QUIT", "+OK*") }
}

var contractCases = []apiCase{
	// The document itself.
	{name: "openapi", route: "GET /api/v1/openapi.json", path: "/api/v1/openapi.json", on: "anon", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			raw, _ := os.ReadFile("openapi.json")
			if !bytes.Equal(ex.got, raw) || ex.resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("served document differs from openapi.json or has type %q", ex.resp.Header.Get("Content-Type"))
			}
		}},

	// Session, login, logout.
	{name: "session local", route: "GET /api/v1/session", path: "/api/v1/session", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var s map[string]any
			wantJSON(t, ex, &s)
			if s["admin"] != true || s["login_required"] != false {
				t.Errorf("local session = %v", s)
			}
		}},
	{name: "session anonymous", route: "GET /api/v1/session", path: "/api/v1/session", on: "anon", status: 200},
	{name: "session alice", route: "GET /api/v1/session", path: "/api/v1/session", on: "alice", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var s map[string]any
			wantJSON(t, ex, &s)
			if s["user"] != "alice" || s["admin"] != false {
				t.Errorf("alice's session = %v", s)
			}
		}},
	{name: "login", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `{"user":"alice","password":"alice-secret"}`, status: 200},
	{name: "login wrong password", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `{"user":"alice","password":"nope"}`, status: 401},
	{name: "login bad JSON", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `{"user":`, status: 400, invalid: true},
	{name: "login no user", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `{"user":"","password":"x"}`, status: 400, invalid: true},
	{name: "login without CSRF", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `{"user":"alice","password":"alice-secret"}`, noCSRF: true, status: 403, invalid: true},
	{name: "login not JSON", route: "POST /api/v1/login", path: "/api/v1/login", on: "anon",
		body: `user=alice`, ctype: "application/x-www-form-urlencoded", status: 415, invalid: true},
	{name: "login under a rebound Host", route: "POST /api/v1/login", path: "/api/v1/login", on: "open",
		host: "attacker.example", body: `{"user":"user","password":"pass"}`, status: 403},
	{name: "logout", route: "POST /api/v1/logout", path: "/api/v1/logout", on: "alice", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var s map[string]any
			wantJSON(t, ex, &s)
			if _, ok := s["user"]; ok || s["login_required"] != true {
				t.Errorf("after logout: %v", s)
			}
		}},
	{name: "logout without CSRF", route: "POST /api/v1/logout", path: "/api/v1/logout", on: "alice", noCSRF: true, status: 403, invalid: true},

	// Mailboxes.
	{name: "mailboxes local", route: "GET /api/v1/mailboxes", path: "/api/v1/mailboxes", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var l struct{ Mailboxes []struct{ Name string } }
			wantJSON(t, ex, &l)
			if len(l.Mailboxes) != 1 || l.Mailboxes[0].Name != "user" {
				t.Errorf("mailboxes = %s", ex.got)
			}
		}},
	{name: "mailboxes alice", route: "GET /api/v1/mailboxes", path: "/api/v1/mailboxes", on: "alice", status: 200},
	{name: "mailboxes admin", route: "GET /api/v1/mailboxes", path: "/api/v1/mailboxes", on: "boss", status: 200},
	{name: "mailboxes without login", route: "GET /api/v1/mailboxes", path: "/api/v1/mailboxes", on: "anon", status: 401},
	{name: "mailboxes under a rebound Host", route: "GET /api/v1/mailboxes", path: "/api/v1/mailboxes", on: "open",
		host: "attacker.example", status: 401},

	// Listing and search.
	{name: "list", route: "GET " + msgsRoute, path: userMsgs, on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var l struct{ Total int }
			wantJSON(t, ex, &l)
			if l.Total != 7 {
				t.Errorf("total = %d, want 7", l.Total)
			}
		}},
	{name: "list search and page", route: "GET " + msgsRoute, path: userMsgs + "?q=has:attachment+report&page=1&per_page=1", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var l struct {
				Total    int
				Messages []struct{ ID string }
			}
			wantJSON(t, ex, &l)
			if l.Total != 1 || len(l.Messages) != 1 || l.Messages[0].ID != f.ids["rich"] {
				t.Errorf("search = %s", ex.got)
			}
		}},
	{name: "list page past the end", route: "GET " + msgsRoute, path: userMsgs + "?page=9", on: "open", status: 200},
	{name: "list empty mailbox", route: "GET " + msgsRoute, path: "/api/v1/mailboxes/nobody/messages", on: "open", status: 200},
	{name: "list own", route: "GET " + msgsRoute, path: "/api/v1/mailboxes/alice/messages", on: "alice", status: 200},
	{name: "list bad page", route: "GET " + msgsRoute, path: userMsgs + "?page=0", on: "open", status: 400, invalid: true},
	{name: "list per_page too large", route: "GET " + msgsRoute, path: userMsgs + "?per_page=501", on: "open", status: 400, invalid: true},
	{name: "list per_page not a number", route: "GET " + msgsRoute, path: userMsgs + "?per_page=ten", on: "open", status: 400, invalid: true},
	{name: "list bad search", route: "GET " + msgsRoute, path: userMsgs + "?q=color:blue", on: "open", status: 400},
	{name: "list bad mailbox name", route: "GET " + msgsRoute, path: "/api/v1/mailboxes/Bad!/messages", on: "open", status: 400, invalid: true},
	{name: "list another's mailbox", route: "GET " + msgsRoute, path: "/api/v1/mailboxes/boss/messages", on: "alice", status: 404},
	{name: "list without login", route: "GET " + msgsRoute, path: "/api/v1/mailboxes/alice/messages", on: "anon", status: 401},

	// One message.
	{name: "message plain", route: "GET " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct {
				Cc       []string
				Text     string
				Date     *time.Time
				Envelope struct {
					ReturnPath string `json:"return_path"`
					Recipients []string
				}
			}
			wantJSON(t, ex, &m)
			if len(m.Cc) != 1 || !strings.Contains(m.Text, "plain text") || m.Date == nil ||
				m.Envelope.ReturnPath != "alice@example.org" || len(m.Envelope.Recipients) != 1 {
				t.Errorf("plain message = %s", ex.got)
			}
		}},
	{name: "message rich", route: "GET " + msgRoute, path: userMsgs + "/{{rich}}", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct {
				Subject       string
				HTML          string
				RemoteContent bool `json:"remote_content"`
				Attachments   []struct{ Filename string }
				Parts         struct{ Parts []struct{ Parts []any } }
			}
			wantJSON(t, ex, &m)
			if m.Subject != "contract rich café" || !m.RemoteContent || strings.Contains(m.HTML, "script") ||
				len(m.Attachments) != 2 || m.Attachments[1].Filename != "report.pdf" ||
				len(m.Parts.Parts) != 3 || len(m.Parts.Parts[0].Parts) != 2 {
				t.Errorf("rich message = %s", ex.got)
			}
		}},
	{name: "message unknown id", route: "GET " + msgRoute, path: userMsgs + "/no-such-id", on: "open", status: 404},
	{name: "message bad id", route: "GET " + msgRoute, path: userMsgs + "/.hidden", on: "open", status: 400, invalid: true},
	{name: "message of another", route: "GET " + msgRoute, path: "/api/v1/mailboxes/alice/messages/{{alice}}", on: "boss", status: 200},
	{name: "message without login", route: "GET " + msgRoute, path: "/api/v1/mailboxes/alice/messages/{{alice}}", on: "anon", status: 401},

	// Raw, parts, HTML.
	{name: "raw", route: "GET " + msgRoute + "/raw", path: userMsgs + "/{{plain}}/raw", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if !bytes.Contains(ex.got, []byte("\r\nSubject: contract plain\r\n")) || !bytes.HasPrefix(ex.got, []byte("Return-Path: ")) {
				t.Errorf("raw = %q", ex.got)
			}
		}},
	{name: "raw unknown id", route: "GET " + msgRoute + "/raw", path: userMsgs + "/no-such-id/raw", on: "open", status: 404},
	{name: "part PDF", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/3", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if !bytes.HasPrefix(ex.got, []byte("%PDF-1.4")) || ex.resp.Header.Get("Content-Type") != "application/pdf" {
				t.Errorf("PDF part: %s %q", ex.resp.Header.Get("Content-Type"), ex.got)
			}
		}},
	{name: "part image inline", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/2", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if !strings.HasPrefix(ex.resp.Header.Get("Content-Disposition"), "inline") {
				t.Errorf("image disposition %q", ex.resp.Header.Get("Content-Disposition"))
			}
		}},
	{name: "part image download", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/2?download=1", on: "open", status: 200},
	{name: "part text", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/1.1", on: "open", status: 200},
	{name: "part missing", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/9", on: "open", status: 404},
	{name: "part container", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/1", on: "open", status: 404},
	{name: "part bad number", route: "GET " + msgRoute + "/parts/{part}", path: userMsgs + "/{{rich}}/parts/0", on: "open", status: 404, invalid: true},
	{name: "html", route: "GET " + msgRoute + "/html", path: userMsgs + "/{{rich}}/html", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if bytes.Contains(ex.got, []byte("tracker.example")) || bytes.Contains(ex.got, []byte("<script")) {
				t.Errorf("html not sanitized: %s", ex.got)
			}
		}},
	{name: "html remote", route: "GET " + msgRoute + "/html", path: userMsgs + "/{{rich}}/html?remote=1", on: "open", status: 200},
	{name: "html none", route: "GET " + msgRoute + "/html", path: userMsgs + "/{{plain}}/html", on: "open", status: 404},

	// Marking read.
	{name: "mark read", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `{"read":true}`, status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var s struct{ Read bool }
			if wantJSON(t, ex, &s); !s.Read {
				t.Errorf("after marking read: %s", ex.got)
			}
		}},
	{name: "mark unread", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `{"read":false}`, status: 200},
	{name: "mark bad JSON", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `{"read":"yes"}`, status: 400, invalid: true},
	{name: "mark without flag", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `{}`, status: 400, invalid: true},
	{name: "mark unknown id", route: "PATCH " + msgRoute, path: userMsgs + "/no-such-id", on: "open", body: `{"read":true}`, status: 404},
	{name: "mark without CSRF", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `{"read":true}`, noCSRF: true, status: 403, invalid: true},
	{name: "mark not JSON", route: "PATCH " + msgRoute, path: userMsgs + "/{{plain}}", on: "open", body: `read`, ctype: "text/plain", status: 415, invalid: true},
	{name: "mark another's", route: "PATCH " + msgRoute, path: "/api/v1/mailboxes/boss/messages/x1", on: "alice", body: `{"read":true}`, status: 404},

	// Deleting.
	{name: "delete", route: "DELETE " + msgRoute, path: userMsgs + "/{{del1}}", on: "open", status: 204},
	{name: "delete again", route: "DELETE " + msgRoute, path: userMsgs + "/{{del1}}", on: "open", status: 404},
	{name: "delete bad id", route: "DELETE " + msgRoute, path: userMsgs + "/.x", on: "open", status: 400, invalid: true},
	{name: "delete without CSRF", route: "DELETE " + msgRoute, path: userMsgs + "/{{del2}}", on: "open", noCSRF: true, status: 403, invalid: true},
	{name: "delete while POP3 holds the mailbox", route: "DELETE " + msgRoute, path: userMsgs + "/{{locked}}", on: "open", status: 409,
		before: lockByPOP3},
	{name: "delete without login", route: "DELETE " + msgRoute, path: "/api/v1/mailboxes/alice/messages/{{alice}}", on: "anon", status: 401},
	{name: "delete many", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `{"ids":["{{del2}}","gone-already"]}`, status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct {
				Deleted  []string
				NotFound []string `json:"not_found"`
			}
			wantJSON(t, ex, &r)
			if len(r.Deleted) != 1 || r.Deleted[0] != f.ids["del2"] || len(r.NotFound) != 1 {
				t.Errorf("delete many = %s", ex.got)
			}
		}},
	{name: "delete many neither", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `{}`, status: 400, invalid: true},
	{name: "delete many both", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `{"ids":["{{del3}}"],"all":true}`, status: 400, invalid: true},
	{name: "delete many bad JSON", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `[`, status: 400, invalid: true},
	{name: "delete many bad id", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `{"ids":[".x"]}`, status: 400, invalid: true},
	{name: "delete many not JSON", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `ids=1`, ctype: "text/plain", status: 415, invalid: true},
	{name: "delete many while POP3 holds the mailbox", route: "DELETE " + msgsRoute, path: userMsgs, on: "open", body: `{"all":true}`, status: 409,
		before: lockByPOP3},
	{name: "delete many another's", route: "DELETE " + msgsRoute, path: "/api/v1/mailboxes/boss/messages", on: "alice", body: `{"all":true}`, status: 404},
	{name: "delete all", route: "DELETE " + msgsRoute, path: "/api/v1/mailboxes/alice/messages", on: "alice", body: `{"all":true}`, status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct{ Deleted []string }
			if wantJSON(t, ex, &r); len(r.Deleted) != 1 || r.Deleted[0] != f.ids["alice"] {
				t.Errorf("delete all = %s", ex.got)
			}
		}},

	// The event stream; contractEvents checks the events after the first.
	{name: "events", route: "GET /api/v1/events", path: "/api/v1/events", on: "open", status: 200},
	{name: "events of one mailbox", route: "GET /api/v1/events", path: "/api/v1/events?mailbox=alice", on: "alice", status: 200},
	{name: "events of another's mailbox", route: "GET /api/v1/events", path: "/api/v1/events?mailbox=boss", on: "alice", status: 404},
	{name: "events bad mailbox name", route: "GET /api/v1/events", path: "/api/v1/events?mailbox=Bad!", on: "open", status: 404, invalid: true},
	{name: "events without login", route: "GET /api/v1/events", path: "/api/v1/events", on: "anon", status: 401},

	// Waiting for a message, and the latest one.
	{name: "wait for one already there", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=subject:plain&timeout=5s", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct {
				ID          string
				Subject     string
				Attachments []any
			}
			if wantJSON(t, ex, &m); m.ID != f.ids["plain"] || m.Subject != "contract plain" || m.Attachments == nil {
				t.Errorf("wait = %s", ex.got)
			}
		}},
	{name: "wait after a marker", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=subject:contract&after={{plain}}&timeout=5s", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct{ ID string }
			if wantJSON(t, ex, &m); m.ID != f.ids["rich"] {
				t.Errorf("the message after plain is %s, want rich %s", m.ID, f.ids["rich"])
			}
		}},
	{name: "wait after a time", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=subject:rich&after=2000-01-01T00:00:00Z&timeout=1", on: "open", status: 200},
	{name: "wait times out at once", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=subject:nothing-like-it&timeout=0", on: "open", status: 408,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if !ex.resp.Close {
				t.Error("408 without Connection: close")
			}
		}},
	{name: "wait times out", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?after={{links}}&timeout=50ms", on: "open", status: 408},
	{name: "wait bad timeout", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?timeout=soon", on: "open", status: 400, invalid: true},
	{name: "wait negative timeout", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?timeout=-1s", on: "open", status: 400, invalid: true},
	{name: "wait bad search", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=color:blue", on: "open", status: 400},
	{name: "wait bad marker", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?after=.x", on: "open", status: 400, invalid: true},
	{name: "wait unknown marker", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?after=no-such-id&timeout=0", on: "open", status: 404},
	{name: "wait in another's mailbox", route: "GET " + msgsRoute + "/wait", path: "/api/v1/mailboxes/boss/messages/wait?timeout=0", on: "alice", status: 404},
	{name: "wait without login", route: "GET " + msgsRoute + "/wait", path: "/api/v1/mailboxes/alice/messages/wait?timeout=0", on: "anon", status: 401},
	{name: "latest", route: "GET " + msgsRoute + "/latest", path: userMsgs + "/latest", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct{ ID string }
			if wantJSON(t, ex, &m); m.ID != f.ids["links"] {
				t.Errorf("latest is %s, want the links message %s", m.ID, f.ids["links"])
			}
		}},
	{name: "latest matching", route: "GET " + msgsRoute + "/latest", path: userMsgs + "/latest?q=has:attachment", on: "open", status: 200},
	{name: "latest of an empty mailbox", route: "GET " + msgsRoute + "/latest", path: "/api/v1/mailboxes/nobody/messages/latest", on: "open", status: 404},
	{name: "latest no match", route: "GET " + msgsRoute + "/latest", path: userMsgs + "/latest?q=subject:nothing-like-it", on: "open", status: 404},
	{name: "latest bad search", route: "GET " + msgsRoute + "/latest", path: userMsgs + "/latest?q=color:blue", on: "open", status: 400},
	{name: "latest without login", route: "GET " + msgsRoute + "/latest", path: "/api/v1/mailboxes/alice/messages/latest", on: "anon", status: 401},

	// Links.
	{name: "links", route: "GET " + msgRoute + "/links", path: userMsgs + "/{{links}}/links", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var l struct{ Links []map[string]any }
			if wantJSON(t, ex, &l); len(l.Links) != 5 {
				t.Fatalf("links = %s", ex.got)
			}
			for _, k := range []string{"status", "skipped", "error", "final_url"} {
				if _, ok := l.Links[0][k]; ok {
					t.Errorf("%s without check=1: %s", k, ex.got)
				}
			}
		}},
	{name: "links checked", route: "GET " + msgRoute + "/links", path: userMsgs + "/{{links}}/links?check=1", on: "open", status: 200,
		before: func(t *testing.T, f *fixture) func() { f.linkHits.Store(0); return nil },
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var l struct {
				Links []struct {
					URL, Source, Skipped, Error string
					FinalURL                    string `json:"final_url"`
					Status                      int
				}
			}
			wantJSON(t, ex, &l)
			got := map[string]string{}
			for _, k := range l.Links {
				u := strings.Replace(k.URL, f.links.URL, "LINKS", 1)
				got[u] = fmt.Sprintf("%s %d %s|%s|%s", k.Source, k.Status, strings.Replace(k.FinalURL, f.links.URL, "LINKS", 1), k.Skipped, k.Error)
			}
			want := map[string]string{
				"LINKS/ok":                 "text 200 ||",
				"https://example.com/docs": "text 0 |host not allowed|",
				"LINKS/moved":              "html 200 LINKS/ok||",
				"LINKS/away":               "html 302 ||redirect to a host not allowed: https://elsewhere.example/",
				"mailto:help@example.org":  "html 0 |not an http or https URL|",
			}
			for u, w := range want {
				if got[u] != w {
					t.Errorf("%s: %q, want %q", u, got[u], w)
				}
			}
			// HEAD /ok, HEAD /moved and /ok, HEAD /away: the allowed hosts only.
			if n := f.linkHits.Load(); n != 4 {
				t.Errorf("the link server answered %d requests, want 4", n)
			}
		}},
	{name: "links bad check", route: "GET " + msgRoute + "/links", path: userMsgs + "/{{links}}/links?check=yes", on: "open", status: 400, invalid: true},
	{name: "links unknown id", route: "GET " + msgRoute + "/links", path: userMsgs + "/no-such-id/links", on: "open", status: 404},
	{name: "links without login", route: "GET " + msgRoute + "/links", path: "/api/v1/mailboxes/alice/messages/x1/links", on: "anon", status: 401},

	// Send.
	{name: "send", route: "POST /api/v1/send", path: "/api/v1/send", on: "open", status: 201,
		body: `{"from":"App <app@example.org>","to":["new+sent@example.org"],"cc":[],"bcc":["hidden+sentbcc@example.org"],` +
			`"subject":"contract sent","text":"Hello","html":"<p>Hello</p>",` +
			`"attachments":[{"filename":"a.txt","content_type":"text/plain","content":"aGVsbG8K"}],"headers":{"X-Test-Run":"42"}}`,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct {
				ID        string
				Mailboxes []string
				MessageID string `json:"message_id"`
			}
			if wantJSON(t, ex, &r); len(r.Mailboxes) != 1 || r.Mailboxes[0] != "user" || !strings.HasSuffix(r.MessageID, "@mx.test") {
				t.Errorf("send = %s", ex.got)
			}
			f.ids["sent"] = r.ID
		}},
	{name: "wait for the sent message by its Bcc tag", route: "GET " + msgsRoute + "/wait", path: userMsgs + "/wait?q=tag:sentbcc&timeout=5s", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var m struct {
				ID, Subject string
				Attachments []struct{ Filename string }
			}
			if wantJSON(t, ex, &m); m.ID != f.ids["sent"] || m.Subject != "contract sent" || len(m.Attachments) != 1 {
				t.Errorf("wait tag:sentbcc = %s", ex.got)
			}
		}},
	{name: "send bad JSON", route: "POST /api/v1/send", path: "/api/v1/send", on: "open", body: `{"from":`, status: 400, invalid: true},
	{name: "send unknown member", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":["user@example.org"],"body":"x"}`, status: 400, invalid: true},
	{name: "send without recipient", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":[],"text":"x"}`, status: 400, invalid: true},
	{name: "send bad address", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":["not an address"]}`, status: 400},
	{name: "send reserved header", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":["user@example.org"],"headers":{"Received":"from x"}}`, status: 400},
	{name: "send over the size limit", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":["user@example.org"],"text":"` + strings.Repeat("x", openMaxSize) + `"}`, status: 413,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var e struct{ SMTP struct{ Code int } }
			if wantJSON(t, ex, &e); e.SMTP.Code != 552 {
				t.Errorf("413 = %.300s", ex.got)
			}
		}},
	{name: "send body over its limit", route: "POST /api/v1/send", path: "/api/v1/send", on: "open",
		body: `{"from":"a@example.org","to":["user@example.org"],"text":"` + strings.Repeat("x", 2*openMaxSize+1<<20) + `"}`, status: 413},
	{name: "send to an unknown user", route: "POST /api/v1/send", path: "/api/v1/send", on: "alice",
		body: `{"from":"alice@example.org","to":["alice@example.org","nobody@example.org"],"text":"x"}`, status: 422,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var e struct {
				Recipient string
				SMTP      struct{ Code int }
			}
			if wantJSON(t, ex, &e); e.Recipient != "nobody@example.org" || e.SMTP.Code != 550 {
				t.Errorf("422 = %s", ex.got)
			}
		}},
	{name: "send without CSRF", route: "POST /api/v1/send", path: "/api/v1/send", on: "open", noCSRF: true,
		body: `{"from":"a@example.org","to":["user@example.org"]}`, status: 403, invalid: true},
	{name: "send not JSON", route: "POST /api/v1/send", path: "/api/v1/send", on: "open", ctype: "text/plain",
		body: `from=a`, status: 415, invalid: true},
	{name: "send without login", route: "POST /api/v1/send", path: "/api/v1/send", on: "anon",
		body: `{"from":"a@example.org","to":["alice@example.org"]}`, status: 401},

	// Release: the open server releases to the users server's SMTP.
	{name: "release", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 200,
		body: `{"to":["alice@example.test"]}`,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct {
				ID, Addr, From string
				To             []string
			}
			if wantJSON(t, ex, &r); r.ID != f.ids["plain"] || r.Addr != f.ids["target"] || r.From != "alice@example.org" || len(r.To) != 1 {
				t.Errorf("release = %s", ex.got)
			}
		}},
	{name: "wait for the released copy", route: "GET " + msgsRoute + "/wait", path: "/api/v1/mailboxes/alice/messages/wait?q=subject:plain&timeout=5s", on: "boss", status: 200},
	{name: "release to a named target with the null sender", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{rich}}/release", on: "open", status: 200,
		body: `{"to":["alice@example.test"],"addr":"{{target}}","from":""}`},
	{name: "release refused by the target", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 502,
		body: `{"to":["nobody@example.test"]}`,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var e struct {
				Stage, Recipient string
				SMTP             struct{ Code int }
			}
			if wantJSON(t, ex, &e); e.Stage != "RCPT" || e.Recipient != "nobody@example.test" || e.SMTP.Code != 550 {
				t.Errorf("502 = %s", ex.got)
			}
		}},
	{name: "release to a target that is down", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 502,
		body: `{"to":["alice@example.test"],"addr":"{{down}}"}`,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var e map[string]any
			if wantJSON(t, ex, &e); e["stage"] != "connect" || e["smtp"] != nil {
				t.Errorf("502 = %s", ex.got)
			}
		}},
	{name: "release to a recipient not allowed", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 403,
		body: `{"to":["x@other.test"]}`},
	{name: "release to a target not allowed", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 403,
		body: `{"to":["alice@example.test"],"addr":"127.0.0.1:1"}`},
	{name: "release bad address", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 400,
		body: `{"to":["not an address"]}`},
	{name: "release without recipient", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 400,
		body: `{"to":[]}`, invalid: true},
	{name: "release unknown member", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 400,
		body: `{"to":["alice@example.test"],"cc":["x@example.test"]}`, invalid: true},
	{name: "release unknown id", route: "POST " + msgRoute + "/release", path: userMsgs + "/no-such-id/release", on: "open", status: 404,
		body: `{"to":["alice@example.test"]}`},
	{name: "release without CSRF", route: "POST " + msgRoute + "/release", path: userMsgs + "/{{plain}}/release", on: "open", status: 403,
		body: `{"to":["alice@example.test"]}`, noCSRF: true, invalid: true},
	{name: "release disabled", route: "POST " + msgRoute + "/release", path: "/api/v1/mailboxes/alice/messages/x1/release", on: "alice", status: 403,
		body: `{"to":["alice@example.test"]}`},

	// Deleting by query.
	{name: "delete by query", route: "DELETE " + msgsRoute, path: userMsgs + "?q=subject:bulk", on: "open", status: 200,
		before: func(t *testing.T, f *fixture) func() {
			for range 2 {
				f.open.send(t, "a@example.org", []string{"user@example.org"}, "Subject: contract bulk\r\n\r\nx\r\n")
			}
			return nil
		},
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct{ Deleted int }
			if wantJSON(t, ex, &r); r.Deleted != 2 {
				t.Errorf("delete by query = %s", ex.got)
			}
		}},
	{name: "delete by query matching nothing", route: "DELETE " + msgsRoute, path: userMsgs + "?q=subject:bulk", on: "open", status: 200},
	{name: "delete by query and body", route: "DELETE " + msgsRoute, path: userMsgs + "?q=subject:bulk", on: "open", body: `{"all":true}`, status: 400},
	{name: "delete by bad query", route: "DELETE " + msgsRoute, path: userMsgs + "?q=color:blue", on: "open", status: 400},
	{name: "delete by query while POP3 holds the mailbox", route: "DELETE " + msgsRoute, path: userMsgs + "?q=subject:locked", on: "open", status: 409,
		before: lockByPOP3},
	{name: "delete everything", route: "DELETE " + msgsRoute, path: "/api/v1/mailboxes/alice/messages", on: "alice", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var r struct{ Deleted int }
			if wantJSON(t, ex, &r); r.Deleted != 2 { // the two released copies
				t.Errorf("delete everything = %s", ex.got)
			}
		}},

	// Chaos.
	{name: "chaos none", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if string(bytes.TrimSpace(ex.got)) != `{"enabled":false,"rules":[]}` {
				t.Errorf("no chaos = %s", ex.got)
			}
		}},
	{name: "chaos set", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 200,
		body: `{"seed":7,"rules":[{"stage":"RCPT","match":"*@chaos.test","action":"reply","code":550,"enhanced":"5.1.1","text":"no (chaos)"},` +
			`{"stage":"helo","match":"nobody.chaos.test","action":"delay","delay":"1ms"},{"stage":"message","match":"*@chaos.test","probability":0.5,"action":"drop"}],` +
			`"rate":{"per_second":1000}}`,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var v struct {
				Enabled bool
				Source  string
				Seed    int
				Rules   []struct{ Stage string }
			}
			if wantJSON(t, ex, &v); !v.Enabled || v.Source != "api" || v.Seed != 7 || len(v.Rules) != 3 || v.Rules[0].Stage != "rcpt" || v.Rules[1].Stage != "ehlo" {
				t.Errorf("chaos set = %s", ex.got)
			}
			// In force: SMTP refuses the recipient.
			err := smtp.SendMail(f.open.s.Listener("smtp").Addr().String(), nil, "a@example.org", []string{"x@chaos.test"}, []byte("Subject: x\r\n\r\nx\r\n"))
			if err == nil || !strings.Contains(err.Error(), "550") {
				t.Errorf("SMTP to x@chaos.test: %v, want 550", err)
			}
		}},
	{name: "chaos in force", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 200},
	{name: "chaos success code", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 400,
		body: `{"rules":[{"stage":"rcpt","action":"reply","code":250}]}`, invalid: true},
	{name: "chaos bad stage", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 400,
		body: `{"rules":[{"stage":"quit","action":"drop"}]}`},
	{name: "chaos unknown field", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 400,
		body: `{"rules":[],"mode":"evil"}`, invalid: true},
	{name: "chaos bad JSON", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 400, body: `{"rules":`, invalid: true},
	{name: "chaos not JSON", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 415, body: `rules`, ctype: "text/plain", invalid: true},
	{name: "chaos without CSRF", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 403, body: `{"rules":[]}`, noCSRF: true, invalid: true},
	{name: "chaos still in force", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			var v struct{ Rules []any }
			if wantJSON(t, ex, &v); len(v.Rules) != 3 {
				t.Errorf("refused changes changed the rules: %s", ex.got)
			}
		}},
	{name: "chaos clear", route: "DELETE /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 200,
		check: func(t *testing.T, f *fixture, ex *exchange) {
			if string(bytes.TrimSpace(ex.got)) != `{"enabled":false,"rules":[]}` {
				t.Errorf("cleared = %s", ex.got)
			}
		}},
	{name: "chaos clear without CSRF", route: "DELETE /api/v1/chaos", path: "/api/v1/chaos", on: "open", status: 403, noCSRF: true, invalid: true},
	{name: "chaos read by a user", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "alice", status: 200},
	{name: "chaos set by a user", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "alice", status: 403, body: `{"rules":[]}`},
	{name: "chaos cleared by a user", route: "DELETE /api/v1/chaos", path: "/api/v1/chaos", on: "alice", status: 403},
	{name: "chaos set by the admin", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "boss", status: 200, body: `{"rate":{"per_second":50}}`},
	{name: "chaos cleared by the admin", route: "DELETE /api/v1/chaos", path: "/api/v1/chaos", on: "boss", status: 200},
	{name: "chaos without login", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "anon", status: 401},
	{name: "chaos on an exposed listener", route: "GET /api/v1/chaos", path: "/api/v1/chaos", on: "wild", status: 403},
	{name: "chaos set on an exposed listener", route: "PUT /api/v1/chaos", path: "/api/v1/chaos", on: "wild", status: 403, body: `{"rules":[]}`},
}

// routeRegexp matches the concrete paths of a documented path.
func routeRegexp(path string) *regexp.Regexp {
	re := regexp.QuoteMeta(path)
	re = regexp.MustCompile(`\\\{[a-z_]+\\\}`).ReplaceAllString(re, `[^/]+`)
	return regexp.MustCompile("^" + re + "$")
}

// TestOpenAPIContract runs contractCases in order against real servers
// and validates each request and answer against the document.
func TestOpenAPIContract(t *testing.T) {
	c := loadContract(t)
	f := newFixture(t, c)
	ops := c.operations()
	succeeded := map[string]bool{}
	clients := map[string]*apiClient{}
	clientFor := func(t *testing.T, on string) *apiClient {
		switch on {
		case "open":
			return f.open.client(t, c)
		case "anon":
			return f.users.client(t, c)
		case "wild":
			return f.wild.client(t, c)
		}
		if cl := clients[on]; cl != nil {
			cl.t = t // a logged-in client serves many cases
			return cl
		}
		cl := f.users.client(t, c)
		cl.login(on, on+"-secret")
		clients[on] = cl
		return cl
	}
	for _, tc := range contractCases {
		t.Run(tc.name, func(t *testing.T) {
			if !slices.Contains(ops, tc.route) {
				t.Fatalf("route %q is not an operation of openapi.json", tc.route)
			}
			method, routePath, _ := strings.Cut(tc.route, " ")
			path := f.expand(tc.path)
			if p, _, _ := strings.Cut(path, "?"); !routeRegexp(routePath).MatchString(p) {
				t.Fatalf("path %s is not one of %s", path, routePath)
			}
			cl := clientFor(t, tc.on)
			if tc.on == "alice" && tc.name == "logout" {
				clients["alice"] = nil // its session ends here
			}
			if tc.before != nil {
				if after := tc.before(t, f); after != nil {
					defer after()
				}
			}
			ex := cl.do(exchange{method: method, path: path, body: f.expand(tc.body), ctype: tc.ctype,
				noCSRF: tc.noCSRF, host: tc.host, stream: routePath == "/api/v1/events"})
			if ex.resp.StatusCode != tc.status {
				t.Fatalf("%s %s: status %d, want %d; body %.500s", method, path, ex.resp.StatusCode, tc.status, ex.got)
			}
			if ex.resp.StatusCode >= 400 {
				var e struct{ Error string }
				if json.Unmarshal(ex.got, &e); e.Error == "" {
					t.Errorf("error answer %q is not {\"error\": ...}", ex.got)
				}
			}
			cl.validate(ex, tc.invalid)
			if tc.check != nil {
				tc.check(t, f, ex)
			}
			if !t.Failed() && tc.status < 300 {
				succeeded[tc.route] = true
			}
		})
	}
	for _, op := range ops {
		if !succeeded[op] {
			t.Errorf("no case answered %s with success: add one to contractCases", op)
		}
	}
}

// TestOpenAPIEvents validates the data of the stream's events after
// hello against the document's EventData schema: an arrival over SMTP,
// a flag change and a deletion through the API.
func TestOpenAPIEvents(t *testing.T) {
	c := loadContract(t)
	a := startAPIServer(t, nil)
	cl := a.client(t, c)
	ex := cl.do(exchange{method: "GET", path: "/api/v1/events?mailbox=user", stream: true})
	cl.validate(ex, false)
	if !bytes.Contains(ex.got, []byte("event: hello\ndata: {}\n")) {
		t.Fatalf("first event %q", ex.got)
	}
	schema := c.model.Components.Schemas.GetOrZero("EventData").Schema()
	sv := schema_validation.NewSchemaValidator(config.WithFormatAssertions())
	next := func(kind string) {
		t.Helper()
		var ev, data string
		for {
			line, err := ex.sr.ReadString('\n')
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			line = strings.TrimSuffix(line, "\n")
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				data = v
			} else if line == "" && ev != "" {
				break
			}
		}
		if ev != kind {
			t.Fatalf("event %q (%s), want %q", ev, data, kind)
		}
		if ok, errs := sv.ValidateSchemaString(schema, data); !ok {
			t.Errorf("%s event data %s does not match EventData:%s", kind, data, problems(errs))
		}
	}
	a.send(t, "a@example.org", []string{"user@example.org"}, "Subject: ev\r\n\r\nx\r\n")
	next("arrived")
	id := findID(t, cl, "user", "ev")
	cl.validate(cl.do(exchange{method: "PATCH", path: userMsgs + "/" + id, body: `{"read":true}`}), false)
	next("updated")
	cl.validate(cl.do(exchange{method: "DELETE", path: userMsgs + "/" + id}), false)
	next("deleted")
}

// TestOpenAPIRejectsDrift shows that the validation can fail: real
// answers, altered the way a code change would alter them (a field added,
// a required one dropped, a type or a format changed, a header lost), no
// longer match the document.
func TestOpenAPIRejectsDrift(t *testing.T) {
	c := loadContract(t)
	a := startAPIServer(t, nil)
	cl := a.client(t, c)
	a.send(t, "a@example.org", []string{"user@example.org"}, plainMsg)
	id := findID(t, cl, "user", "plain")
	get := func(path string) *exchange {
		ex := cl.do(exchange{method: "GET", path: path})
		cl.validate(ex, false) // the real answer matches
		return ex
	}
	msg := get(userMsgs + "/" + id)
	list := get(userMsgs)
	sess := get("/api/v1/session")
	raw := get(userMsgs + "/" + id + "/raw")
	missing := cl.do(exchange{method: "GET", path: userMsgs + "/no-such-id"})
	cl.validate(missing, false)
	a.send(t, "a@example.org", []string{"user@example.org"}, strings.ReplaceAll(linksMsg, "LINKS", "http://127.0.0.1:9"))
	links := get(userMsgs + "/" + findID(t, cl, "user", "links") + "/links")
	chaosView := get("/api/v1/chaos")
	wait := get(userMsgs + "/wait?q=subject:plain&timeout=0")
	sent := cl.do(exchange{method: "POST", path: "/api/v1/send", body: `{"from":"a@example.org","to":["user@example.org"],"text":"x"}`})
	cl.validate(sent, false)
	bulk := cl.do(exchange{method: "DELETE", path: userMsgs + "?q=subject:nothing-like-it"})
	cl.validate(bulk, false)
	edit := func(body []byte, change func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(body, &m)
		change(m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, d := range []struct {
		name   string
		ex     *exchange
		body   []byte
		header func(h http.Header)
	}{
		{"message gains a field", msg, edit(msg.got, func(m map[string]any) { m["spam_score"] = 1 }), nil},
		{"message loses received", msg, edit(msg.got, func(m map[string]any) { delete(m, "received") }), nil},
		{"message date not RFC 3339", msg, edit(msg.got, func(m map[string]any) { m["date"] = "Mon, 06 May 2024" }), nil},
		{"message part gains a field", msg, edit(msg.got, func(m map[string]any) { m["parts"].(map[string]any)["encoding"] = "7bit" }), nil},
		{"message envelope gains a field", msg, edit(msg.got, func(m map[string]any) { m["envelope"].(map[string]any)["helo"] = "x" }), nil},
		{"summary gains a field", list, edit(list.got, func(m map[string]any) {
			m["messages"].([]any)[0].(map[string]any)["flags"] = []string{}
		}), nil},
		{"size becomes a string", list, edit(list.got, func(m map[string]any) {
			m["messages"].([]any)[0].(map[string]any)["size"] = "12"
		}), nil},
		{"session without csrf_token", sess, edit(sess.got, func(m map[string]any) { delete(m, "csrf_token") }), nil},
		{"error shape", missing, []byte(`{"message":"no such message"}`), nil},
		{"error gains a field", missing, []byte(`{"error":"no such message","code":404}`), nil},
		{"raw without Content-Disposition", raw, raw.got, func(h http.Header) { h.Del("Content-Disposition") }},
		{"session cached", sess, sess.got, func(h http.Header) { h.Set("Cache-Control", "max-age=60") }},
		{"link gains a field", links, edit(links.got, func(m map[string]any) {
			m["links"].([]any)[0].(map[string]any)["rel"] = "nofollow"
		}), nil},
		{"link source unknown", links, edit(links.got, func(m map[string]any) {
			m["links"].([]any)[0].(map[string]any)["source"] = "css"
		}), nil},
		{"chaos rules null", chaosView, []byte(`{"enabled":true,"source":"api","rules":null,"rate":{"per_second":5}}`), nil},
		{"chaos rule stage upper-case", chaosView, []byte(`{"enabled":true,"source":"api","rules":[{"stage":"RCPT","action":"drop"}]}`), nil},
		{"wait answers a summary", wait, edit(wait.got, func(m map[string]any) { m["attachments"] = false }), nil},
		{"send result without message_id", sent, edit(sent.got, func(m map[string]any) { delete(m, "message_id") }), nil},
		{"delete count as a list", bulk, []byte(`{"deleted":[]}`), nil},
	} {
		resp := *d.ex.resp
		resp.Header = d.ex.resp.Header.Clone()
		if d.header != nil {
			d.header(resp.Header)
		}
		resp.Body = io.NopCloser(bytes.NewReader(d.body))
		if ok, _ := c.v.ValidateHttpResponse(d.ex.req, &resp); ok {
			t.Errorf("%s: the document accepts it", d.name)
		}
	}
	// An undocumented status code.
	resp := *msg.resp
	resp.StatusCode = 418
	resp.Body = io.NopCloser(strings.NewReader(`{"error":"teapot"}`))
	if ok, _ := c.v.ValidateHttpResponse(msg.req, &resp); ok {
		t.Error("status 418: the document accepts it")
	}
}
