package maildir

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// IMAP's modified UTF-7 (RFC 3501 §5.1.3), the on-disk spelling of folder
// name components, as Dovecot's Maildir++ layout writes them: printable
// US-ASCII stands for itself except '&', written "&-"; any other run of
// characters is "&" + their UTF-16 in modified base64 (',' for '/', no
// padding) + "-".

const utf7Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

var errBadUTF7 = errors.New("invalid modified UTF-7")

// utf7Decoding maps an octet to its base64 value, or 0xff.
var utf7Decoding = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(utf7Alphabet); i++ {
		t[utf7Alphabet[i]] = byte(i)
	}
	return t
}()

// encodeUTF7 returns s (valid UTF-8) in modified UTF-7.
func encodeUTF7(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c <= 0x7e {
			if c == '&' {
				b.WriteString("&-")
			} else {
				b.WriteByte(c)
			}
			i++
			continue
		}
		// RFC 3501 §5.1.3: a run of non-printable characters is one
		// base64 section.
		j := i
		var units []uint16
		for j < len(s) && (s[j] < 0x20 || s[j] > 0x7e) {
			r, n := utf8.DecodeRuneInString(s[j:])
			j += n
			units = utf16.AppendRune(units, r)
		}
		b.WriteByte('&')
		var acc uint32
		bits := 0
		for _, u := range units {
			acc = acc<<16 | uint32(u)
			bits += 16
			for bits >= 6 {
				bits -= 6
				b.WriteByte(utf7Alphabet[(acc>>bits)&0x3f])
			}
		}
		if bits > 0 {
			b.WriteByte(utf7Alphabet[(acc<<(6-bits))&0x3f])
		}
		b.WriteByte('-')
		i = j
	}
	return b.String()
}

// decodeUTF7 returns the UTF-8 of s in modified UTF-7. It refuses what RFC
// 3501 §5.1.3 forbids: raw octets outside printable US-ASCII, an
// unterminated or non-minimal base64 section ("&" followed by base64 of
// printable ASCII or of "&", two adjacent sections), non-zero padding bits,
// unpaired surrogates.
func decodeUTF7(s string) (string, error) {
	var b strings.Builder
	prevSection := false // the last thing decoded was a base64 section
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", errBadUTF7
		}
		if c != '&' {
			b.WriteByte(c)
			i++
			prevSection = false
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", errBadUTF7
		}
		enc := s[i+1 : i+1+end]
		i += end + 2
		if enc == "" {
			b.WriteByte('&')
			prevSection = false
			continue
		}
		if prevSection {
			return "", errBadUTF7 // two sections must be one
		}
		var units []uint16
		var acc uint32
		bits := 0
		for j := 0; j < len(enc); j++ {
			v := utf7Decoding[enc[j]]
			if v == 0xff {
				return "", errBadUTF7
			}
			acc = acc<<6 | uint32(v)
			bits += 6
			if bits >= 16 {
				bits -= 16
				units = append(units, uint16(acc>>bits))
				acc &= 1<<bits - 1
			}
		}
		if bits >= 6 || acc != 0 || len(units) == 0 {
			return "", errBadUTF7
		}
		for k := 0; k < len(units); k++ {
			u := units[k]
			var r rune
			switch {
			case utf16.IsSurrogate(rune(u)):
				if u >= 0xdc00 || k+1 >= len(units) {
					return "", errBadUTF7
				}
				r = utf16.DecodeRune(rune(u), rune(units[k+1]))
				if r == utf8.RuneError {
					return "", errBadUTF7
				}
				k++
			default:
				r = rune(u)
			}
			if r >= 0x20 && r <= 0x7e {
				return "", errBadUTF7 // printable ASCII stands for itself
			}
			b.WriteRune(r)
		}
		prevSection = true
	}
	return b.String(), nil
}
