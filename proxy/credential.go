package proxy

import (
	"errors"
	"net/http"
	"strings"
)

// bearerToken reads the credential, on every route. The only accepted
// form is exactly one "Authorization: Bearer <token68>" (RFC 6750 §2.1:
// the scheme case-insensitive, one space). Anything else that is present
// is an error, answered 400 and never forwarded: a credential the gateway
// reads as "no token" but an upstream reads as a token (a tab or comma
// after the scheme, another scheme, a second header) would reach it
// unverified. Tokens in query strings or bodies are not read (RFC 6750
// §2.3 discourages them: they end up in logs).
func bearerToken(h http.Header) (string, error) {
	vals := h["Authorization"]
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", errors.New("more than one Authorization header")
	}
	v := vals[0]
	const scheme = "Bearer "
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)-1], "Bearer") || v[len(scheme)-1] != ' ' {
		return "", errors.New("the Authorization header is not Bearer <token>")
	}
	tok := v[len(scheme):]
	if !isToken68(tok) {
		return "", errors.New("the bearer token is empty or not token68")
	}
	return tok, nil
}

// isToken68 reports whether s is RFC 7235 token68:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
// It runs over every bearer token of every request, so it is one table
// lookup per byte.
func isToken68(s string) bool {
	n := len(s)
	for n > 0 && s[n-1] == '=' {
		n--
	}
	if n == 0 {
		return false
	}
	for i := 0; i < n; i++ {
		if !token68[s[i]] {
			return false
		}
	}
	return true
}

// token68 marks the bytes token68 allows before its "=" padding.
var token68 = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()
