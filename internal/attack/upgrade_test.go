package attack

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

const wsKey = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="

// TestAttackUpgradeOnlyWebSocketIsTunnelled: an h2c (or any other) upgrade
// through a public route would hand the client a raw HTTP/2 connection to
// the upstream, where it can ask for /admin without the gateway seeing it
// (h2c smuggling). Only "Upgrade: websocket" on GET is tunnelled.
func TestAttackUpgradeOnlyWebSocketIsTunnelled(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil)
	refused := []struct {
		name    string
		method  string
		target  string
		headers []string
	}{
		{"h2c upgrade on a public route", "GET", "/pub", []string{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"h2c upgrade on the websocket route", "GET", "/ws", []string{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"}},
		{"upper-case H2C", "GET", "/pub", []string{"Upgrade: H2C", "Connection: Upgrade"}},
		{"h2c without Connection: Upgrade", "GET", "/pub", []string{"Upgrade: h2c"}},
		{"unknown protocol foo", "GET", "/ws", []string{"Upgrade: foo", "Connection: Upgrade"}},
		{"websocket then h2c in one header", "GET", "/ws", []string{"Upgrade: websocket, h2c", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13"}},
		{"h2c then websocket in one header", "GET", "/ws", []string{"Upgrade: h2c, websocket", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13"}},
		{"websocket and h2c in two headers", "GET", "/ws", []string{"Upgrade: websocket", "Upgrade: h2c", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13"}},
		{"websocket with a version suffix", "GET", "/ws", []string{"Upgrade: websocket/13", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13"}},
		{"websocket on POST", "POST", "/ws", []string{"Upgrade: websocket", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13", "Content-Length: 0"}},
		{"TLS upgrade", "GET", "/pub", []string{"Upgrade: TLS/1.2", "Connection: Upgrade"}},
		{"HTTP/2.0 upgrade", "GET", "/pub", []string{"Upgrade: HTTP/2.0", "Connection: Upgrade"}},
		{"empty Upgrade", "GET", "/pub", []string{"Upgrade:", "Connection: Upgrade"}},
		{"Upgrade with only a comma", "GET", "/pub", []string{"Upgrade: ,", "Connection: Upgrade"}},
		{"lower-case upgrade header names", "GET", "/pub", []string{"upgrade: h2c", "Connection: upgrade"}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			req := rq(c.method, c.target, c.headers...)
			r := send(t, w.gw.addr, req)
			expectError(t, req, r, 400, "upgrade_not_allowed")
			w.expectNoUpstream(t, req)
		})
	}
	for _, up := range []string{"websocket", "WebSocket", "WEBSOCKET"} {
		t.Run("Upgrade: "+up+" is tunnelled", func(t *testing.T) {
			w.reset()
			req := rq("GET", "/ws/chat", "Upgrade: "+up, "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13")
			c, err := net.Dial("tcp", w.gw.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			r := readResponse(br)
			if r.Status != 101 {
				t.Fatalf("request %q: got %s, want 101", req, r)
			}
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
				t.Errorf("request %q: tunnel echoed %q, %v", req, buf, err)
			}
			w.expectLanded(t, req, upWS)
		})
	}
	t.Run("websocket on a required route still needs a token", func(t *testing.T) {
		w.reset()
		req := rq("GET", "/admin/ws", "Upgrade: websocket", "Connection: Upgrade", wsKey, "Sec-WebSocket-Version: 13")
		r := send(t, w.gw.addr, req)
		expectStatus(t, req, r, 401)
		w.expectNoUpstream(t, req)
	})
}
