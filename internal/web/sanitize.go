package web

import (
	"html"
	"net/url"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"
)

// sanitized is an HTML body made safe to show.
type sanitized struct {
	HTML string
	// Remote reports whether the body refers to remote content (http,
	// https or protocol-relative image/media sources), blocked unless
	// asked for.
	Remote bool
}

// sanitizeHTML cleans an HTML body with bluemonday's user-generated-content
// policy plus inline styles (mail is laid out with them; the frame's
// Content-Security-Policy still blocks any url() they load). cid: sources
// are rewritten to the part download URL partURL(path); remote sources are
// dropped unless remote is set. Scripts, event handlers, forms, frames,
// objects and <style>/<link> elements never survive.
func sanitizeHTML(body string, cids map[string]string, partURL func(path string) string, remote bool) sanitized {
	var out sanitized
	p := bluemonday.UGCPolicy()
	p.AllowAttrs("style").Globally()
	p.AllowAttrs("align", "valign", "width", "height", "bgcolor", "color", "border", "cellpadding", "cellspacing").Globally()
	p.AllowElements("font", "center")
	p.AllowAttrs("face", "size").OnElements("font")
	p.AllowURLSchemes("http", "https", "mailto", "cid", "data")
	p.AllowDataURIImages()
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	p.RewriteSrc(func(u *url.URL) {
		switch strings.ToLower(u.Scheme) {
		case "cid":
			id := u.Opaque
			if id == "" {
				id = strings.TrimPrefix(u.String()[len(u.Scheme)+1:], "//")
			}
			if uid, err := url.PathUnescape(id); err == nil {
				id = uid
			}
			if path, ok := cids[strings.Trim(id, "<>")]; ok {
				*u = url.URL{Path: partURL(path)}
			} else {
				*u = url.URL{}
			}
		case "data":
		case "http", "https", "":
			if u.Scheme == "" && u.Host == "" {
				// A relative URL: nothing to resolve it against.
				*u = url.URL{}
				return
			}
			out.Remote = true
			if !remote {
				*u = url.URL{}
			}
		default:
			*u = url.URL{}
		}
	})
	out.HTML = p.Sanitize(body)
	// The sanitizer writes quotes in attribute values as &#39; and &#34;:
	// look for url() in the unescaped text.
	if !out.Remote && remoteInStyle.MatchString(html.UnescapeString(out.HTML)) {
		out.Remote = true
	}
	return out
}

// remoteInStyle finds url(...) references to remote content left in
// inline styles (the CSP blocks them until remote content is allowed).
var remoteInStyle = regexp.MustCompile(`(?i)url\(\s*['"]?\s*(https?:)?//`)
