package index

import (
	"bytes"
	"mime"

	"github.com/emersion/go-message/charset"

	"postoffice/internal/store"
)

// Description is what a store without a file index of its own (the shared
// store) keeps of a message to list and search it: the summary the web
// list shows and the search text, taken from the message as this index
// takes them, so that both stores list and search alike.
type Description struct {
	// Summary has the header fields and Attachments set; the caller
	// fills ID, Received, Size, Seen.
	Summary store.Summary
	// Text is the body's search text (decoded text parts, HTML without
	// markup, file names of parts).
	Text string
	// Fetch is precompute(raw), or nil when precompute is nil or the
	// message is larger than store.MaxSearchBytes.
	Fetch []byte
}

// Describe summarizes raw (a whole message, or its first
// store.MaxSearchBytes) as the index does when it indexes a file.
func Describe(raw []byte, precompute func([]byte) []byte) (Description, error) {
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	var d Description
	if err := summarize(bytes.NewReader(raw), &d.Summary, &dec); err != nil {
		return d, err
	}
	d.Text = bodyText(raw, &dec)
	if precompute != nil && len(raw) < store.MaxSearchBytes {
		d.Fetch = precompute(raw)
	}
	return d, nil
}
