// Package attack is the gateway's attacker's-view test suite. It has no
// production code: its tests build a real gateway from a YAML file (through
// config.Load and app.New, as `gateway serve` does), put one recording
// upstream behind every route, and talk to the public listener over raw TCP
// sockets, writing the request bytes by hand, because HTTP client libraries
// normalise away exactly the bytes an attacker sends (encoded slashes, dot
// segments, lower-case methods, odd Authorization spellings, broken chunked
// framing, ...).
//
// Every test asserts which upstream a request landed on, or that none did,
// and in what exact form (method, raw request target, headers), so a
// request-interpretation gap shows up as "the public upstream received
// /pub%2F..%2Fadmin" rather than as a vague status code.
//
// Tests are named after the class of attack they cover: TestAttackPath...,
// TestAttackMethod..., TestAttackIdentity..., TestAttackIssuer...,
// TestAttackScopes..., TestAttackCredentials..., TestAttackRewrite...,
// TestAttackUpgrade..., TestAttackUntrustedHeaders..., TestAttackMetadata...,
// TestAttackFraming..., TestAttackExhaustion... and TestAttackConfig....
// The shared harness (gateway start, raw send, recording upstreams) is in
// harness_test.go.
package attack
