package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message"
	"golang.org/x/net/html"
)

// Link listing and checking bounds.
const (
	// maxLinks: a message's listing stops at this many distinct links.
	maxLinks = 1000
	// maxLinkChecks: at most this many links of one request are checked;
	// the others are reported skipped.
	maxLinkChecks = 100
	// linkCheckConcurrency: links checked at the same time, per request.
	linkCheckConcurrency = 4
	// linkCheckTimeout bounds each link's check, redirects included.
	linkCheckTimeout = 10 * time.Second
	// maxLinkRedirects: redirects followed per link (each hop checked
	// against the allow-list).
	maxLinkRedirects = 10
)

// linkJSON is one link of GET .../links.
type linkJSON struct {
	URL string `json:"url"`
	// Source is where the link was first found: "html" (an attribute of
	// an HTML part) or "text" (a URL in a text/plain part).
	Source string `json:"source"`
	// With ?check=1: the HTTP status of the last response, the URL it
	// came from when redirects were followed, why the link was not
	// fetched, or what went wrong.
	Status   int    `json:"status,omitempty"`
	FinalURL string `json:"final_url,omitempty"`
	Skipped  string `json:"skipped,omitempty"`
	Error    string `json:"error,omitempty"`
}

// getLinks is GET .../messages/{id}/links[?check=1]: every link of the
// message's HTML parts (href, src, srcset, action, poster, background
// attributes) and text parts (http, https and ftp URLs), distinct, in
// order of appearance; with check=1 each http(s) link to a host of
// --link-check-allow is fetched (HEAD, GET when HEAD is refused) and its
// status reported.
func (h *Handler) getLinks(w http.ResponseWriter, r *http.Request, mb string) {
	check := false
	switch r.URL.Query().Get("check") {
	case "", "0", "false":
	case "1", "true":
		check = true
	default:
		writeError(w, http.StatusBadRequest, "check: want 1 or 0")
		return
	}
	raw, _, err := h.readMessage(mb, r.PathValue("id"))
	if err != nil {
		h.storeError(w, r, err)
		return
	}
	links := messageLinks(raw)
	if check {
		h.checkLinks(r.Context(), links)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"mailbox": mb, "id": r.PathValue("id"), "links": links})
}

// messageLinks lists the links of the text and HTML parts of raw.
func messageLinks(raw []byte) []*linkJSON {
	out := []*linkJSON{}
	seen := map[string]bool{}
	add := func(u, source string) {
		u = strings.TrimSpace(u)
		if u == "" || strings.HasPrefix(u, "#") || len(out) >= maxLinks || seen[u] {
			return
		}
		if strings.HasPrefix(strings.ToLower(u), "data:") {
			return // content, not a link
		}
		seen[u] = true
		out = append(out, &linkJSON{URL: u, Source: source})
	}
	fixed, _ := repairHeader(raw)
	ent, err := message.Read(bytes.NewReader(fixed))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		for _, u := range textURLs(toUTF8(raw[:min(len(raw), maxBodyBytes)])) {
			add(u, "text")
		}
		return out
	}
	count := 0
	walkBodies(ent, 0, &count, func(ctype string, body []byte) {
		switch ctype {
		case "text/html":
			htmlLinks(body, func(u string) { add(u, "html") })
		case "text/plain":
			for _, u := range textURLs(toUTF8(body)) {
				add(u, "text")
			}
		}
	})
	return out
}

// walkBodies calls fn with every text/plain and text/html part of e that
// is not an attachment, decoded (at most maxBodyBytes each).
func walkBodies(e *message.Entity, depth int, count *int, fn func(ctype string, body []byte)) {
	*count++
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxDepth {
			return
		}
		for *count < maxParts {
			child, err := mr.NextPart()
			if err != nil && (child == nil || !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err)) {
				return
			}
			walkBodies(child, depth+1, count, fn)
		}
		return
	}
	part := describe(e.Header, "")
	if part.Disposition == "attachment" || part.Filename != "" ||
		part.ContentType != "text/plain" && part.ContentType != "text/html" {
		return
	}
	b, _, _ := readBounded(e.Body, maxBodyBytes)
	fn(part.ContentType, b)
}

// linkAttrs are the attributes of HTML elements that hold a URL.
var linkAttrs = map[string][]string{
	"a": {"href"}, "area": {"href"}, "link": {"href"}, "base": {"href"},
	"img": {"src", "srcset", "longdesc"}, "source": {"src", "srcset"},
	"iframe": {"src"}, "frame": {"src"}, "script": {"src"}, "embed": {"src"},
	"video": {"src", "poster"}, "audio": {"src"}, "track": {"src"},
	"input": {"src"}, "form": {"action"}, "object": {"data"},
	"body": {"background"}, "table": {"background"}, "td": {"background"}, "th": {"background"},
	"blockquote": {"cite"}, "q": {"cite"},
}

// htmlLinks calls fn with every URL in a link attribute of body.
func htmlLinks(body []byte, fn func(string)) {
	z := html.NewTokenizer(bytes.NewReader(body))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			attrs := linkAttrs[string(name)]
			for hasAttr {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				for _, a := range attrs {
					if string(k) != a {
						continue
					}
					if a == "srcset" {
						// "url 1x, url 2x": the URL of each candidate.
						for _, c := range strings.Split(string(v), ",") {
							if f := strings.Fields(c); len(f) > 0 {
								fn(f[0])
							}
						}
						continue
					}
					fn(string(v))
				}
			}
		}
	}
}

// urlRe finds URLs in plain text.
var urlRe = regexp.MustCompile(`(?i)\b(?:https?|ftp)://[^\s<>"]+`)

// textURLs returns the URLs of plain text, without the punctuation that
// ends a sentence or encloses the URL ("(see https://x.test/a).").
func textURLs(text string) []string {
	var out []string
	for _, u := range urlRe.FindAllString(text, -1) {
		for {
			t := strings.TrimRight(u, ".,;:!?'*")
			if strings.HasSuffix(t, ")") && strings.Count(t, "(") < strings.Count(t, ")") {
				t = t[:len(t)-1]
			}
			if strings.HasSuffix(t, "]") && strings.Count(t, "[") < strings.Count(t, "]") {
				t = t[:len(t)-1]
			}
			if t == u {
				break
			}
			u = t
		}
		if i := strings.Index(u, "://"); len(u) > i+3 {
			out = append(out, u)
		}
	}
	return out
}

// linkHostAllowed reports whether the host of u (lower-cased, without
// port or IPv6 brackets) matches a glob of allow.
func linkHostAllowed(allow []string, u *url.URL) bool {
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "" {
		return false
	}
	for _, g := range allow {
		if ok, _ := path.Match(g, host); ok {
			return true
		}
	}
	return false
}

// linkTransport makes the checks' requests: no proxy (a proxy would
// fetch hosts the allow-list does not name), no connection reuse between
// checks.
var linkTransport = &http.Transport{
	Proxy:                  nil,
	DialContext:            (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	TLSHandshakeTimeout:    5 * time.Second,
	ResponseHeaderTimeout:  linkCheckTimeout,
	DisableKeepAlives:      true,
	MaxResponseHeaderBytes: 64 << 10,
}

// checkLinks fills in the status of every link, linkCheckConcurrency at
// a time. A link to a host the allow-list does not name is never
// fetched, nor is a redirect to one followed.
func (h *Handler) checkLinks(ctx context.Context, links []*linkJSON) {
	sem := make(chan struct{}, linkCheckConcurrency)
	var wg sync.WaitGroup
	checked := 0
	for _, l := range links {
		u, err := url.Parse(l.URL)
		switch {
		case err != nil:
			l.Skipped = "not a valid URL"
			continue
		case u.Scheme != "http" && u.Scheme != "https":
			l.Skipped = "not an http or https URL"
			continue
		case !linkHostAllowed(h.opts.LinkCheckAllow, u):
			l.Skipped = "host not allowed"
			continue
		case checked >= maxLinkChecks:
			l.Skipped = fmt.Sprintf("more than %d links to check", maxLinkChecks)
			continue
		}
		checked++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			h.checkLink(ctx, l, u)
		}()
	}
	wg.Wait()
}

// checkLink fetches one link: HEAD, then GET when the server refuses HEAD
// (405, or 501 from one that does not implement it).
func (h *Handler) checkLink(ctx context.Context, l *linkJSON, u *url.URL) {
	ctx, cancel := context.WithTimeout(ctx, linkCheckTimeout)
	defer cancel()
	var blocked string
	client := &http.Client{
		Transport: linkTransport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !linkHostAllowed(h.opts.LinkCheckAllow, req.URL) {
				blocked = req.URL.String()
				return http.ErrUseLastResponse
			}
			if len(via) >= maxLinkRedirects {
				return fmt.Errorf("more than %d redirects", maxLinkRedirects)
			}
			return nil
		},
	}
	do := func(method string) (*http.Response, error) {
		blocked = ""
		req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", "Postoffice link check")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		return resp, nil
	}
	resp, err := do(http.MethodHead)
	if err == nil && (resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented) {
		resp, err = do(http.MethodGet)
	}
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		l.Error = err.Error()
		return
	}
	l.Status = resp.StatusCode
	if final := resp.Request.URL.String(); final != u.String() {
		l.FinalURL = final
	}
	if blocked != "" {
		l.Error = "redirect to a host not allowed: " + blocked
	}
}
