package testsupport

import "testing"

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"250 *", "250 2.0.0 Ok", true},
		{"250 *", "251 Ok", false},
		{"*queued as *", "250 2.0.0 Ok: queued as Q1", true},
		{"+OK*", "+OK hi", true},
		{"+OK*", "+OK", true},
		{"-ERR [SYS/TEMP] *", "-ERR [SYS/TEMP] x", true},
		{"-ERR [SYS/TEMP] *", "-ERR [AUTH] x", false},
		{"-ERR [IN-USE]*", "-ERR [IN-USE] maildrop locked", true},
		{"a?c", "abc", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{"a*b*c", "acb", false},
		{"ab*ba", "aba", false},
		{"a*a", "a", false},
		{"**", "", true},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"exact", "exact", true},
		{"exact", "exact!", false},
		{"abc", "abcd", false},
	} {
		if got := Glob(tc.p, tc.s); got != tc.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tc.p, tc.s, got, tc.want)
		}
	}
}
