package store

// ValidMailboxName reports whether name is a mailbox name every store
// accepts: 1-64 characters of [a-z0-9._-], not starting with '.', without
// "..". Such a name is a single path element that cannot reach outside the
// root, cannot be a hidden Maildir++ folder, and has one spelling (callers
// lowercase user names first).
func ValidMailboxName(name string) bool {
	if len(name) < 1 || len(name) > 64 || name[0] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_', c == '-':
		case c == '.':
			if i > 0 && name[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// ValidID reports whether id can name a message in a request: 1-70
// characters of 0x21-0x7E (RFC 1939 §7, the UIDL alphabet) without '/' or
// '\', not starting with '.'.
func ValidID(id string) bool {
	if len(id) < 1 || len(id) > 70 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}
