package tokenendpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
)

// answer is the issuer's answer, read whole: it is only sent once the
// gateway knows whether to add to it.
type answer struct {
	status int
	header http.Header // hop-by-hop headers removed
	body   []byte
}

// readRequest reads the token request's body, at most maxBody bytes. A
// larger body is an *http.MaxBytesError and is never forwarded.
func (h *handler) readRequest(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, &http.MaxBytesError{Limit: h.maxBody}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		return nil, fmt.Errorf("read token request: %w", err)
	}
	return b, nil
}

// exchange sends the request to the issuer as the client sent it (body,
// Authorization, Content-Type and the rest, less hop-by-hop headers) and
// reads the answer, at most MaxAnswerBytes. The transport is called
// directly: a redirect goes back to the client instead of carrying its
// credentials somewhere else.
func (h *handler) exchange(ctx context.Context, in http.Header, body []byte) (*answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build issuer request: %w", err)
	}
	req.Header = forwardedHeader(in)
	// The body must be read to be extended: ask for it uncompressed, so
	// what the client gets is what the issuer wrote.
	req.Header.Set("Accept-Encoding", "identity")
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "") // no Go-http-client in the client's name
	}
	resp, err := h.transport.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", h.targetLog, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the issuer's answer: %w", err)
	}
	if len(b) > MaxAnswerBytes {
		return nil, fmt.Errorf("the issuer's answer exceeds %d bytes", MaxAnswerBytes)
	}
	removeHopByHop(resp.Header)
	return &answer{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// forwardedHeader copies the client's headers less the hop-by-hop ones,
// and less what describes the body as received: the body is buffered, so
// its length is known again, and its 100-continue is already answered.
func forwardedHeader(in http.Header) http.Header {
	out := in.Clone()
	removeHopByHop(out)
	out.Del("Content-Length")
	out.Del("Expect")
	return out
}

// removeHopByHop deletes, in place, the headers of one connection (RFC
// 9110 §7.6.1) as httputil.ReverseProxy does: the fixed set and those
// Connection names.
func removeHopByHop(h http.Header) {
	hopByHop := [...]string{
		"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
	}
	for _, v := range h["Connection"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// writeAnswer sends the issuer's status and headers with body, whose
// length it states again (it may have grown), marked uncacheable.
func writeAnswer(w http.ResponseWriter, a *answer, body []byte) {
	hdr := w.Header()
	for k, v := range a.header {
		hdr[k] = v
	}
	hdr.Del("Content-Length")
	if bodyAllowed(a.status) {
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
	}
	noStore(hdr)
	w.WriteHeader(a.status)
	if bodyAllowed(a.status) {
		_, _ = w.Write(body)
	}
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// isClientCredentials reports whether the token request asks for the
// client-credentials grant, read from a JSON or a form body as Auth0
// accepts both. A form naming the grant twice is no client-credentials
// request: what the issuer read is unknown, so nothing is added.
func isClientCredentials(h http.Header, body []byte) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt == "application/json" {
		var p struct {
			GrantType string `json:"grant_type"`
		}
		return json.Unmarshal(body, &p) == nil && p.GrantType == "client_credentials"
	}
	v, err := url.ParseQuery(string(body))
	return err == nil && len(v["grant_type"]) == 1 && v.Get("grant_type") == "client_credentials"
}

// jsonObject returns the members of an answer that is one uncompressed
// JSON object, said to be application/json; ok is false for anything
// else, which is never added to.
func jsonObject(a *answer) (members map[string]json.RawMessage, ok bool) {
	mt, _, _ := mime.ParseMediaType(a.header.Get("Content-Type"))
	if mt != "application/json" {
		return nil, false
	}
	if ce := a.header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil, false
	}
	if t := bytes.TrimSpace(a.body); len(t) == 0 || t[0] != '{' {
		return nil, false
	}
	if err := json.Unmarshal(a.body, &members); err != nil || len(members) == 0 {
		return nil, false
	}
	return members, true
}

// insertMember adds `,<member><value>` before the object's closing brace:
// the issuer's bytes before and after stay as they were, so every
// standard field reads exactly as the issuer wrote it. body is a JSON
// object with at least one member (see jsonObject), so its last '}' is
// the closing one and a comma is needed.
func insertMember(body, member, value []byte) []byte {
	end := bytes.LastIndexByte(body, '}')
	out := make([]byte, 0, len(body)+1+len(member)+len(value))
	out = append(out, body[:end]...)
	out = append(out, ',')
	out = append(out, member...)
	out = append(out, value...)
	return append(out, body[end:]...)
}
