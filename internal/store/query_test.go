package store

import "testing"

func TestParseQuery(t *testing.T) {
	q, err := ParseQuery(`hello from:Alice subject:"two words" larger:1K is:unread has:attachment after:2024-01-02`)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Words) != 1 || q.Words[0] != "hello" || q.From[0] != "alice" || q.Subject[0] != "two words" ||
		q.Larger != 1024 || q.Seen == nil || *q.Seen || q.Attachments == nil || q.After.Day() != 2 {
		t.Fatalf("%+v", q)
	}
	for _, bad := range []string{"x:y", "larger:k", "before:soon", "is:x", "has:y"} {
		if _, err := ParseQuery(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseQueryTag(t *testing.T) {
	q, err := ParseQuery(`tag:Signup-42 tag:"b c"`)
	if err != nil {
		t.Fatal(err)
	}
	if len(q.Tags) != 2 || q.Tags[0] != "signup-42" || q.Tags[1] != "b c" || q.IsZero() {
		t.Fatalf("%+v", q)
	}
	if _, err := ParseQuery("tag:a@b"); err == nil {
		t.Error("tag:a@b: no error")
	}
	s := Summary{Tags: []string{"b c", "signup-42"}}
	if !q.MatchSummary(&s) {
		t.Error("MatchSummary: the tags do not match")
	}
	s.Tags = []string{"signup-4"}
	if q.MatchSummary(&s) {
		t.Error("MatchSummary: signup-4 matched tag:signup-42")
	}
}

func TestAddressTag(t *testing.T) {
	for addr, want := range map[string]string{
		"a+t1@x.test":               "t1",
		"A+T1@X.TEST":               "t1",
		"Name <b+two+parts@x.test>": "two+parts",
		`"q+quoted"@x.test`:         "quoted",
		"<c+t3@x.test>":             "t3",
		"plain@x.test":              "",
		"a+@x.test":                 "",
		"no-at+tag":                 "",
		" d+spaced@x.test ":         "spaced",
		"e+t@sub@x.test":            "",
	} {
		got, ok := AddressTag(addr)
		if got != want || ok != (want != "") {
			t.Errorf("AddressTag(%q) = %q, %v; want %q", addr, got, ok, want)
		}
	}
}
