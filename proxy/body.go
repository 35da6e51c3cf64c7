package proxy

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// bodyReader is the request body as the proxy reads it. It enforces the
// route's size limit and the server's read timeout (the longest silence
// between two reads), and it remembers why a read failed, so that a body
// the client could not deliver is answered as the client's error (400,
// 408, 413) instead of counting as an upstream failure.
type bodyReader struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	err     error // the first read error other than io.EOF
}

// init wraps body; limit 0 means no size limit, timeout 0 no timeout.
func (b *bodyReader) init(w http.ResponseWriter, body io.ReadCloser, limit int64, timeout time.Duration) {
	if limit > 0 {
		body = http.MaxBytesReader(w, body, limit)
	}
	b.r, b.timeout = body, timeout
	if timeout > 0 {
		b.rc = http.NewResponseController(w)
	}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.rc != nil {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.r.Read(p)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF):
		if b.rc != nil {
			// The body is done: lift the deadline, or the server's
			// background read would end long responses (streams) at it.
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	default:
		if b.err == nil {
			b.err = err
		}
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.r.Close() }

// refusal is the answer for a failed body read, nil if none failed.
func (b *bodyReader) refusal() *refusal {
	var tooLarge *http.MaxBytesError
	switch {
	case b.err == nil:
		return nil
	case errors.As(b.err, &tooLarge):
		return clientRefusal(http.StatusRequestEntityTooLarge, "request_too_large", "The request body is too large")
	case errors.Is(b.err, os.ErrDeadlineExceeded):
		rf := clientRefusal(http.StatusRequestTimeout, "request_timeout", "The request body was not sent in time")
		rf.closeConn = true
		return rf
	default:
		rf := clientRefusal(http.StatusBadRequest, "invalid_body", "The request body could not be read (bad framing or connection lost)")
		rf.closeConn = true
		return rf
	}
}
