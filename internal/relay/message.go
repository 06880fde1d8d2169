package relay

import (
	"bufio"
	"bytes"
	"io"
	"strings"
)

// Info is what Inspect learns of a stored message before it is released.
type Info struct {
	// ReturnPath is the reverse-path of the first leading Return-Path
	// field, without the angle brackets ("" for the null path <>);
	// HasReturnPath tells whether there is such a field.
	ReturnPath    string
	HasReturnPath bool
	// Skip is the length of the leading Return-Path fields: the release
	// leaves them out (RFC 5321 §4.4: "A message-originating SMTP system
	// SHOULD NOT send a message that already contains a Return-path
	// header field"; the final delivery adds its own).
	Skip int64
	// Drops are the X-Original-To fields of the header after the leading
	// Return-Path fields (offsets in the stored message): the envelope
	// recipients of the original delivery, Bcc ones included, which the
	// release does not pass on to its new recipients.
	Drops []Span
	// Size is the length of the rest less the Drops, what the release
	// sends.
	Size int64
	// EightBit: the rest holds an octet above 0x7F, so the far server
	// must offer 8BITMIME (RFC 6152 §3).
	EightBit bool
	// UTF8Header: the header section holds an octet above 0x7F, UTF-8
	// header text that needs SMTPUTF8 (RFC 6531 §3.4, RFC 6532).
	UTF8Header bool
}

// Span is a range of octets of a stored message.
type Span struct{ Off, Len int64 }

// Inspect reads a stored message to its end and returns its Info. It
// reads in bounded chunks, never the whole message at once.
func Inspect(r io.Reader) (Info, error) {
	var info Info
	br := bufio.NewReaderSize(r, 64<<10)
	leading, inHeader := true, true
	lineStart := true
	skipping := false // the current line is (part of) a leading Return-Path field
	dropping := false // the current line is (part of) an X-Original-To field
	var pos int64     // offset of line in the message
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if lineStart {
				skipping = false
				if !leading && inHeader {
					folded := line[0] == ' ' || line[0] == '\t'
					if !folded {
						dropping = len(line) >= len("x-original-to:") && strings.EqualFold(string(line[:len("x-original-to:")]), "x-original-to:")
					}
				}
				if leading {
					switch {
					case info.Skip > 0 && (line[0] == ' ' || line[0] == '\t'):
						skipping = true // a folded Return-Path
					case len(line) >= len("return-path:") && strings.EqualFold(string(line[:len("return-path:")]), "return-path:"):
						skipping = true
						if !info.HasReturnPath {
							info.HasReturnPath = true
							info.ReturnPath = reversePath(line[len("return-path:"):])
						}
					default:
						leading = false
					}
				}
				if !skipping && inHeader && (string(line) == "\r\n" || string(line) == "\n") {
					inHeader, dropping = false, false
				}
			}
			if skipping {
				info.Skip += int64(len(line))
			} else if dropping {
				if n := len(info.Drops); n > 0 && info.Drops[n-1].Off+info.Drops[n-1].Len == pos {
					info.Drops[n-1].Len += int64(len(line))
				} else {
					info.Drops = append(info.Drops, Span{pos, int64(len(line))})
				}
			} else {
				info.Size += int64(len(line))
				if !info.EightBit || inHeader && !info.UTF8Header {
					for _, c := range line {
						if c >= 0x80 {
							info.EightBit = true
							if inHeader {
								info.UTF8Header = true
							}
							break
						}
					}
				}
			}
		}
		pos += int64(len(line))
		lineStart = err == nil
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return info, nil
		default:
			return info, err
		}
	}
}

// reversePath returns the address between the angle brackets of a
// Return-Path field's value.
func reversePath(v []byte) string {
	i, j := bytes.IndexByte(v, '<'), bytes.LastIndexByte(v, '>')
	if i < 0 || j <= i {
		return strings.TrimSpace(string(v))
	}
	return string(v[i+1 : j])
}

// Without returns r, read from offset off of the stored message, less the
// spans drops (sorted, at or after off).
func Without(r io.Reader, off int64, drops []Span) io.Reader {
	return &without{r: r, pos: off, drops: drops}
}

type without struct {
	r     io.Reader
	pos   int64
	drops []Span
}

func (w *without) Read(p []byte) (int, error) {
	for len(w.drops) > 0 && w.pos == w.drops[0].Off {
		if _, err := io.CopyN(io.Discard, w.r, w.drops[0].Len); err != nil {
			return 0, err
		}
		w.pos += w.drops[0].Len
		w.drops = w.drops[1:]
	}
	if len(w.drops) > 0 && int64(len(p)) > w.drops[0].Off-w.pos {
		p = p[:w.drops[0].Off-w.pos]
	}
	n, err := w.r.Read(p)
	w.pos += int64(n)
	return n, err
}
