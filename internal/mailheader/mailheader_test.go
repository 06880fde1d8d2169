package mailheader

import "testing"

func TestEnds(t *testing.T) {
	for _, tc := range []struct {
		line  string
		first bool
		want  bool
	}{
		{"Subject: Test Email\r\n", true, false},
		{"Subject:x", false, false},
		{"X-Empty:\r\n", false, false},
		{"Hello Bob,\r\n", false, true},   // the seed's first body line
		{"\r\n", false, true},             // the separator
		{"\n", false, true},               // bare LF separator
		{"", false, true},                 // the end of the message
		{"\tfolded\r\n", false, false},    // a continuation
		{" folded\r\n", true, true},       // continues nothing
		{":no name\r\n", false, true},     // empty field name
		{"Two words: x\r\n", false, true}, // space in the name
		{"Caf\xc3\xa9: x\r\n", false, true},
		{".\r\n", false, true},
		{"From alice@example.com Mon Jan  1 00:00:00 2024\r\n", true, true}, // mbox separator
		{"Received: from x\r\n", true, false},
		{"Subject: a very long line cut in pieces", false, false},
	} {
		if got := Ends([]byte(tc.line), tc.first); got != tc.want {
			t.Errorf("Ends(%q, %v) = %v, want %v", tc.line, tc.first, got, tc.want)
		}
	}
}

func FuzzEnds(f *testing.F) {
	for _, s := range []string{"Subject: x\r\n", "Hello\r\n", "\r\n", " x\r\n", ":\r\n", "a:\n"} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, line []byte, first bool) {
		got := Ends(line, first)
		// An empty line always ends the header; a field line never does.
		if IsBlank(line) && !got {
			t.Fatalf("blank line %q does not end the header", line)
		}
		if IsField(line) && got {
			t.Fatalf("field %q ends the header", line)
		}
	})
}
