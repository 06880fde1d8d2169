package pop3

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// FuzzDecodePlain checks the SASL PLAIN decoder of AUTH PLAIN (RFC 4616 §2,
// RFC 5034 §4) on arbitrary responses, given either as the base64 of
// arbitrary bytes or as an arbitrary string, against a model: strict base64
// or errBadBase64; exactly three NUL-separated fields, a non-empty user and
// password and an authorization identity that is empty or the user, or
// errBadPlain; on success the fields exactly as sent.
func FuzzDecodePlain(f *testing.F) {
	for _, s := range []string{"\x00user\x00pass", "user\x00user\x00pass", "x\x00user\x00pass", "\x00user\x00",
		"\x00\x00pass", "user\x00pass", "\x00user\x00pa\x00ss", "\x00us\xffer\x00p ass", ""} {
		f.Add([]byte(s), "", false)
	}
	for _, s := range []string{"*", "=", "AHVzZXIAcGFzcw", "AHVzZXIAcGFzcw===", "AHVzZXIAcGFzcx==", "A", "====", "AHVz ZXIAcGFzcw=="} {
		f.Add([]byte(nil), s, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, arg string, useArg bool) {
		if !useArg {
			arg = base64.StdEncoding.EncodeToString(raw)
		}
		user, pass, err := decodePlain(arg)

		decoded, derr := base64.StdEncoding.Strict().DecodeString(arg)
		if derr != nil {
			if !errors.Is(err, errBadBase64) {
				t.Fatalf("invalid base64 %q: %q/%q, %v", arg, user, pass, err)
			}
			return
		}
		if !useArg && !bytes.Equal(decoded, raw) {
			t.Fatalf("model: base64 round trip of %q gave %q", raw, decoded)
		}
		parts := bytes.Split(decoded, []byte{0})
		ok := len(parts) == 3 && len(parts[1]) > 0 && len(parts[2]) > 0 &&
			(len(parts[0]) == 0 || bytes.Equal(parts[0], parts[1]))
		if !ok {
			if !errors.Is(err, errBadPlain) {
				t.Fatalf("malformed %q: %q/%q, %v", decoded, user, pass, err)
			}
			return
		}
		if err != nil || user != string(parts[1]) || pass != string(parts[2]) {
			t.Fatalf("%q: got %q/%q, %v", decoded, user, pass, err)
		}
	})
}
