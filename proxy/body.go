package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bodyReader is the request body as the proxy reads it. It enforces the
// route's size limit and the server's read timeout (the longest silence
// between two reads), and it remembers why a read failed, so that a body
// the client could not deliver is answered as the client's error (400,
// 408, 413) instead of counting as an upstream failure.
//
// The transport may read and close it after the handler returned, so it
// is allocated per request, never pooled, and its error is guarded: the
// error handler may read it while the transport still reads the body.
type bodyReader struct {
	r       io.ReadCloser
	rc      http.ResponseController // zero without a timeout
	timeout time.Duration
	mu      sync.Mutex
	err     error // the first read error other than io.EOF
	// served is set when the handler has returned: the transport may go on
	// reading the body, but a ResponseController must not be used then (the
	// connection may already serve the client's next request).
	served atomic.Bool
}

// newBodyReader wraps body; limit 0 means no size limit, timeout 0 no
// timeout. w must be net/http's own ResponseWriter, not a wrapper that
// outlives the request in a pool.
func newBodyReader(w http.ResponseWriter, body io.ReadCloser, limit int64, timeout time.Duration) *bodyReader {
	if limit > 0 {
		body = http.MaxBytesReader(w, body, limit)
	}
	b := &bodyReader{r: body, timeout: timeout}
	if timeout > 0 {
		b.rc = *http.NewResponseController(w)
	}
	return b
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.timeout > 0 && !b.served.Load() {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.r.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if b.timeout > 0 && !b.served.Load() {
			// The body is done: lift the deadline, or the server's
			// background read would end long responses (streams) at it.
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	default:
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.r.Close() }

// refusal is the answer for a failed body read, nil if none failed.
func (b *bodyReader) refusal() *refusal {
	b.mu.Lock()
	err := b.err
	b.mu.Unlock()
	var tooLarge *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooLarge):
		return clientRefusal(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is too large")
	case errors.Is(err, os.ErrDeadlineExceeded):
		rf := clientRefusal(http.StatusRequestTimeout, "request_timeout", "The request body was not sent in time")
		rf.closeConn = true
		return rf
	default:
		rf := clientRefusal(http.StatusBadRequest, "invalid_body", "The request body could not be read (bad framing or connection lost)")
		rf.closeConn = true
		return rf
	}
}
