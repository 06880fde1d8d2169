package maildir

import "postoffice/internal/store"

// validID reports whether id can be a message file name stem: 1-70
// characters of 0x21-0x7E (the POP3 unique-id alphabet, RFC 1939 §7) without
// '/', ':' (the Maildir info separator) and not starting with '.'.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 70 || id[0] == '.' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c < 0x21 || c > 0x7e || c == '/' || c == ':' {
			return false
		}
	}
	return true
}

// ourFileID returns the id of a message file written by Deliver, whose name
// is "<id>.eml" optionally followed by a Maildir info suffix ":2,<flags>"
// added by a mail reader, and whether name has that form.
func ourFileID(name string) (string, bool) {
	if len(name) < store.IDLen+len(msgExt) {
		return "", false
	}
	id, rest := name[:store.IDLen], name[store.IDLen:]
	if !store.IsNewID(id) || rest[:len(msgExt)] != msgExt {
		return "", false
	}
	rest = rest[len(msgExt):]
	if rest != "" && (len(rest) < 3 || rest[:3] != ":2,") {
		return "", false
	}
	return id, true
}
