// Package headername holds the one rule for when two header names are the
// same to some upstream: ASCII case-insensitively, with '_' read as '-'
// (CGI, PHP and WSGI servers turn both into HTTP_X_CLIENT_ID). Config
// validation and the proxy's header stripping both use it, so the names
// the config promises to protect are exactly the names the proxy strips.
package headername

// HasPrefix reports whether name starts with prefix under the folding
// rule.
func HasPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		if fold(name[i]) != fold(prefix[i]) {
			return false
		}
	}
	return true
}

// Equal reports whether a and b are the same name under the folding rule.
func Equal(a, b string) bool { return len(a) == len(b) && HasPrefix(a, b) }

func fold(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	if c == '_' {
		return '-'
	}
	return c
}
