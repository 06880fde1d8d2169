package maildir

import "testing"

func TestUTF7RoundTrip(t *testing.T) {
	for _, tc := range []struct{ utf8, utf7 string }{
		{"INBOX", "INBOX"},
		{"A&B", "A&-B"},
		{"&", "&-"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"}, // RFC 3501 §5.1.3's example
		{"Entwürfe", "Entw&APw-rfe"},
		{"Gelöschte Elemente", "Gel&APY-schte Elemente"},
		{"😀", "&2D3eAA-"},
		{"é&é", "&AOk-&-&AOk-"},
		{"tab\there", "tab&AAk-here"},
	} {
		if got := encodeUTF7(tc.utf8); got != tc.utf7 {
			t.Errorf("encode %q = %q, want %q", tc.utf8, got, tc.utf7)
		}
		got, err := decodeUTF7(tc.utf7)
		if err != nil || got != tc.utf8 {
			t.Errorf("decode %q = %q, %v; want %q", tc.utf7, got, err, tc.utf8)
		}
	}
}

func TestUTF7Invalid(t *testing.T) {
	for _, s := range []string{
		"&",          // unterminated
		"&AOk",       // unterminated
		"&AOk-&AOk-", // two adjacent sections
		"&AGE-",      // base64 of "a": printable ASCII
		"&ACY-",      // base64 of "&"
		"&AOl-",      // non-zero padding bits
		"&A-",        // too short
		"&2D0-",      // lone high surrogate
		"&3gA-",      // lone low surrogate
		"&AO!-",      // not base64
		"é",          // raw 8-bit
		"a\x01b",     // control octet
	} {
		if got, err := decodeUTF7(s); err == nil {
			t.Errorf("decode %q = %q, want an error", s, got)
		}
	}
}

func FuzzUTF7(f *testing.F) {
	for _, s := range []string{"INBOX", "&U,BTFw-", "&-", "&AOk", "Entw&APw-rfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := decodeUTF7(s)
		if err != nil {
			return
		}
		if e := encodeUTF7(d); e != s {
			t.Fatalf("decode(%q) = %q encodes to %q", s, d, e)
		}
	})
}
