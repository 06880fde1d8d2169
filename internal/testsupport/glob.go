package testsupport

import "strings"

// Glob reports whether s matches pattern, in which '*' matches any run of
// characters (the empty one too) and every other character only itself:
// "?", "[" and "]" are literal, so that POP3 response codes such as
// "[IN-USE]" need no quoting.
func Glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	// Each inner part matches at its first place: a later one would leave
	// less for the parts after it.
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}
