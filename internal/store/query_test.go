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
