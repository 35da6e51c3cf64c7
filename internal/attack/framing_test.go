package attack

import (
	"strconv"
	"strings"
	"testing"
)

// TestAttackFramingMalformedChunkedBody: a chunked body the gateway cannot
// parse is the client's fault: 400 invalid_body, counted as
// gateway_client_errors_total{reason="invalid_body"}, never as an upstream
// error (which would page the upstream's owners and, with passive health,
// could mark a healthy upstream down).
func TestAttackFramingMalformedChunkedBody(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	bodies := []struct{ name, body string }{
		{"chunk size is not hex", "zz\r\nabc\r\n0\r\n\r\n"},
		{"chunk size with a 0x prefix", "0x3\r\nabc\r\n0\r\n\r\n"},
		{"negative chunk size", "-3\r\nabc\r\n0\r\n\r\n"},
		{"chunk size overflows 64 bits", "fffffffffffffffff3\r\nabc\r\n0\r\n\r\n"},
		{"chunk data longer than its size", "3\r\nabcdef\r\n0\r\n\r\n"},
		{"chunk data without its CRLF", "3\r\nabc0\r\n\r\n"},
		{"chunk size line with a bare CR", "3\rabc\r\n0\r\n\r\n"},
		{"space inside the chunk size", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n"},
	}
	before := scrape(t, w.gw)
	for _, b := range bodies {
		for _, target := range []string{"/pub/upload", "/orders/upload"} {
			t.Run(b.name+" to "+target, func(t *testing.T) {
				w.reset()
				req := rq("POST", target, "Transfer-Encoding: chunked", "Content-Type: text/plain") + b.body
				r := send(t, w.gw.addr, req)
				expectError(t, req, r, 400, "invalid_body")
				for _, h := range w.landed() {
					if h.BodyErr == nil && h.BodyLen > 0 {
						t.Errorf("request %q: upstream %s accepted a complete %d-byte body", req, h.Upstream, h.BodyLen)
					}
				}
			})
		}
	}
	after := scrape(t, w.gw)
	n := float64(2 * len(bodies))
	if got := after[`gateway_client_errors_total{reason="invalid_body"}`] - before[`gateway_client_errors_total{reason="invalid_body"}`]; got != n {
		t.Errorf(`gateway_client_errors_total{reason="invalid_body"} rose by %v, want %v`, got, n)
	}
	if got := sumPrefix(after, "gateway_upstream_errors_total") - sumPrefix(before, "gateway_upstream_errors_total"); got != 0 {
		t.Errorf("gateway_upstream_errors_total rose by %v for malformed client bodies, want 0", got)
	}
}

// TestAttackFramingSmuggling: conflicting framing (both Content-Length and
// Transfer-Encoding, two Content-Lengths, an unknown transfer coding) must
// never let a second request reach an upstream inside the first one's
// body: the gateway refuses it, or forwards exactly one request.
func TestAttackFramingSmuggling(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	smuggled := "GET /admin/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	cases := []struct{ name, req string }{
		{"CL.TE: Content-Length and chunked", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE.CL: chunked with a short Content-Length", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n" +
			hexLen(smuggled) + "\r\n" + smuggled + "\r\n0\r\n\r\n"},
		{"two different Content-Lengths", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nContent-Length: " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"Content-Length list", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0, " + itoa(len(smuggled)) + "\r\n\r\n" + smuggled},
		{"chunked, chunked", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"identity transfer coding", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: identity\r\nContent-Length: 0\r\n\r\n" + smuggled},
		{"xchunked", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n" + smuggled},
		{"space before the colon", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + smuggled},
		{"tab-prefixed Transfer-Encoding value", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"obs-fold Transfer-Encoding", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: x\r\n chunked\r\nContent-Length: 0\r\n\r\n" + smuggled},
		{"negative Content-Length", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: -1\r\n\r\n" + smuggled},
		{"plus-signed Content-Length", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nContent-Length: +0\r\n\r\n" + smuggled},
		{"chunk extension hiding a request", "POST /pub/a HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\n0;ext=\"\r\n\r\n" + smuggled + "\"\r\n\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			r := send(t, w.gw.addr, c.req)
			hs := w.landed()
			for _, h := range hs {
				if h.Upstream == upAdmin || strings.Contains(h.RequestURI, "smuggled") {
					t.Errorf("request %q smuggled %s %q to upstream %s", c.req, h.Method, h.RequestURI, h.Upstream)
				}
			}
			if len(hs) > 1 {
				t.Errorf("request %q: one request became %d upstream requests: %s", c.req, len(hs), describeHits(hs))
			}
			t.Logf("%s: %s; upstream: %s", c.name, r, describeHits(hs))
		})
	}
}

func hexLen(s string) string { return strconv.FormatInt(int64(len(s)), 16) }

func itoa(n int) string { return strconv.Itoa(n) }
