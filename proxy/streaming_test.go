package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingListener counts the writes made on the connections it accepts:
// a write is a write(2) to the client.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, writes: l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// TestKnownLengthResponseIsOneWrite: a response of known length is not
// flushed piece by piece (headers, then body), which would cost a write
// per piece on every request.
func TestKnownLengthResponseIsOneWrite(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "11")
		_, _ = io.WriteString(w, "hello world")
	}))
	defer up.Close()
	uu, _ := url.Parse(up.URL)
	f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
		return []RouteConfig{{Name: "api", PathPrefix: "/", Upstreams: []*url.URL{uu}, Auth: AuthPublic}}
	}})
	var writes atomic.Int64
	srv := httptest.NewUnstartedServer(f.gw.Config.Handler)
	srv.Listener = countingListener{Listener: srv.Listener, writes: &writes}
	srv.Start()
	defer srv.Close()

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < 5; i++ {
		before := writes.Load()
		if _, err := io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: gw.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hello world" {
			t.Fatalf("body %q", body)
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("request %d: %d writes to the client, want 1 (headers and body together)", i, n)
		}
	}
}

// TestStreamsFlushBeforeUpstreamFinishes: what must stream still does,
// with FlushInterval 0: ReverseProxy flushes text/event-stream and
// responses of unknown length as they arrive.
func TestStreamsFlushBeforeUpstreamFinishes(t *testing.T) {
	for _, tc := range []struct{ name, contentType, first string }{
		{"server-sent events", "text/event-stream", "data: first"},
		{"chunked response of unknown length", "", "first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				_, _ = io.WriteString(w, tc.first+"\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				_, _ = io.WriteString(w, "last\n")
			}))
			defer up.Close()
			defer close(release)
			uu, _ := url.Parse(up.URL)
			f := newFixture(t, fixtureOpts{routes: func(*url.URL) []RouteConfig {
				return []RouteConfig{{Name: "stream", PathPrefix: "/", Upstreams: []*url.URL{uu}}}
			}})
			resp := f.do(t, "GET", "/stream", f.issuer.Token(t, "svc-billing"), nil)
			line := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(resp.Body).ReadString('\n')
				line <- l
			}()
			select {
			case l := <-line:
				if strings.TrimSpace(l) != tc.first {
					t.Errorf("first line %q, want %q", l, tc.first)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the first chunk did not arrive while the upstream was still writing")
			}
		})
	}
}
