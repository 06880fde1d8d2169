package index

import (
	"bytes"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // every charset go-message knows, for the body parts
	"golang.org/x/net/html"

	"postoffice/internal/store"
)

// maxBodyText bounds the search text kept of one message.
const maxBodyText = 256 << 10

// bodyText returns the search text of a message: its text parts decoded
// (transfer encoding undone, charset converted to UTF-8), the text of its
// HTML parts without the markup, and the file names of its parts. Raw
// base64 or quoted-printable never reaches the index. A message MIME
// cannot parse is indexed as the text it is.
func bodyText(raw []byte, dec *mime.WordDecoder) string {
	var b strings.Builder
	e, err := message.Read(bytes.NewReader(raw))
	if e == nil {
		if err != nil {
			_, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			b.Write(body[:min(len(body), maxBodyText)])
			return strings.ToValidUTF8(b.String(), " ")
		}
	}
	walkText(e, &b, dec, 0)
	return strings.ToValidUTF8(b.String(), " ")
}

func walkText(e *message.Entity, b *strings.Builder, dec *mime.WordDecoder, depth int) {
	if b.Len() >= maxBodyText || depth > 20 {
		return
	}
	// The part's file name, from Content-Disposition or else the older
	// Content-Type name parameter (params is nil on a parse error).
	disp, dparams, _ := e.Header.ContentDisposition()
	t, tparams, _ := e.Header.ContentType()
	name := dparams["filename"]
	if name == "" {
		name = tparams["name"]
	}
	if name != "" {
		b.WriteString(decodeHeader(dec, name))
		b.WriteByte('\n')
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			part, err := mr.NextPart()
			if err != nil {
				return
			}
			walkText(part, b, dec, depth+1)
		}
	}
	if disp == "attachment" {
		return
	}
	switch {
	case t == "" || t == "text/plain" || t == "text/enriched":
		io.Copy(limitWriter{b}, io.LimitReader(e.Body, maxBodyText))
		b.WriteByte('\n')
	case t == "text/html":
		htmlText(io.LimitReader(e.Body, maxBodyText), b)
		b.WriteByte('\n')
	case t == "message/rfc822" || t == "message/global":
		if inner, _ := message.Read(e.Body); inner != nil {
			for _, k := range []string{"From", "To", "Cc", "Subject"} {
				if v := inner.Header.Get(k); v != "" {
					b.WriteString(decodeHeader(dec, v))
					b.WriteByte('\n')
				}
			}
			walkText(inner, b, dec, depth+1)
		}
	}
}

// htmlText writes the text of an HTML document: text nodes outside
// script, style and head, with a space at each tag so that words in
// adjacent elements stay apart.
func htmlText(r io.Reader, b *strings.Builder) {
	z := html.NewTokenizer(r)
	skip := 0
	for b.Len() < maxBodyText {
		switch z.Next() {
		case html.ErrorToken:
			return
		case html.TextToken:
			if skip == 0 {
				b.Write(z.Text())
			}
		case html.StartTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				skip++
			}
			b.WriteByte(' ')
		case html.EndTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "script", "style", "head", "title":
				if skip > 0 {
					skip--
				}
			}
			b.WriteByte(' ')
		}
	}
}

// limitWriter writes into a builder until it holds maxBodyText.
type limitWriter struct{ b *strings.Builder }

func (w limitWriter) Write(p []byte) (int, error) {
	if room := maxBodyText - w.b.Len(); room < len(p) {
		w.b.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return w.b.Write(p)
}

// readLimited reads the first store.MaxSearchBytes of r.
func readLimited(r io.Reader) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r, store.MaxSearchBytes))
}
