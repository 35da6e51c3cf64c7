package invalidation

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/metagate/gateway/enrich"
)

// LogStreamOptions configure the Auth0 log stream receiver.
type LogStreamOptions struct {
	// Authorization is the exact Authorization value the Auth0 custom
	// webhook stream sends (its "Authorization Token" setting).
	Authorization string
	// Issuers are the token issuers of the tenant whose stream this is:
	// a changed client or user is invalidated as a caller of each.
	Issuers      []string
	MaxBodyBytes int64
	Invalidator  Invalidator
	Logger       *zap.Logger
	// OnLine, when set, counts each log entry: "applied" (it named a
	// caller that was invalidated), "ignored" (another kind of event) or
	// "malformed".
	OnLine func(result string)
	// OnInvalidate, when set, counts each invalidated caller by source.
	OnInvalidate func(source string)
}

// NewLogStream returns the receiver of Auth0's custom webhook log stream.
// It accepts the stream's three content formats (JSON lines, a JSON array,
// a single JSON object). An entry of type "sapi" (a Management API
// operation) whose request was a PATCH, PUT or DELETE of
// /api/v2/clients/{id} or /api/v2/users/{id} invalidates that caller on
// every replica; other entries are ignored, and malformed ones skipped and
// counted, never fatal. It answers 200 once the batch is applied, and 503
// when an invalidation could not be made (Auth0 then retries the batch).
func NewLogStream(o LogStreamOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.OnLine == nil {
		o.OnLine = func(string) {}
	}
	if o.OnInvalidate == nil {
		o.OnInvalidate = func(string) {}
	}
	return &logStream{o: o}
}

type logStream struct{ o LogStreamOptions }

// logEntry is the part of an Auth0 log event the receiver reads. The
// stream wraps each event as {"log_id": ..., "data": {event}}.
type logEntry struct {
	LogID string    `json:"log_id"`
	Data  *logEvent `json:"data"`
	logEvent
}

type logEvent struct {
	Type    string `json:"type"`
	Details struct {
		Request struct {
			Method string `json:"method"`
			Path   string `json:"path"`
		} `json:"request"`
	} `json:"details"`
}

func (ls *logStream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "Use POST")
		return
	}
	if !secretEqual(r.Header.Get("Authorization"), ls.o.Authorization) || len(r.Header.Values("Authorization")) != 1 {
		writeError(w, http.StatusUnauthorized, "unauthorized", "The Authorization value is not the log stream's")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, ls.o.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request_too_large", "The batch is larger than invalidation.auth0_log_stream.max_body_bytes")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid_body", "The batch could not be read")
		return
	}
	callers := ls.callers(body)
	for _, c := range callers {
		for _, is := range ls.o.Issuers {
			caller := enrich.NewCaller(is, c.Kind, c.ID)
			if err := ls.o.Invalidator.Invalidate(r.Context(), caller); err != nil {
				ls.o.Logger.Warn("log stream invalidation failed; Auth0 will retry the batch", zap.String("caller_id", caller.Key()), zap.Error(err))
				writeError(w, http.StatusServiceUnavailable, "invalidation_failed", "The invalidation could not be made everywhere")
				return
			}
			ls.o.OnInvalidate(SourceLogStream)
		}
	}
	writeJSON(w, http.StatusOK, map[string]int{"invalidated": len(callers)})
}

// callers are the distinct callers the batch's entries changed.
func (ls *logStream) callers(body []byte) []enrich.Caller {
	var out []enrich.Caller
	seen := map[enrich.Caller]bool{}
	for _, raw := range entries(body, ls.o.OnLine) {
		var e logEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			ls.o.OnLine("malformed")
			continue
		}
		ev := e.logEvent
		if e.Data != nil {
			ev = *e.Data
		}
		c, ok := changedCaller(ev)
		if !ok {
			ls.o.OnLine("ignored")
			continue
		}
		ls.o.OnLine("applied")
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// entries splits a batch into its entries, whichever content format the
// stream uses: a JSON array, one JSON object (possibly spread over lines)
// or JSON lines. An array that does not parse counts as one malformed
// entry.
func entries(body []byte, onLine func(string)) []json.RawMessage {
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) == 0:
		return nil
	case trimmed[0] == '[':
		var list []json.RawMessage
		if err := json.Unmarshal(trimmed, &list); err != nil {
			onLine("malformed")
			return nil
		}
		return list
	case json.Valid(trimmed):
		return []json.RawMessage{trimmed}
	}
	var list []json.RawMessage
	for line := range bytes.SplitSeq(trimmed, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			list = append(list, line)
		}
	}
	return list
}

// changedCaller reads which caller a Management API operation changed:
// PATCH, PUT or DELETE of /api/v2/clients/{id} or /api/v2/users/{id},
// with the id URL-decoded ("auth0%7Calice" is auth0|alice).
func changedCaller(ev logEvent) (enrich.Caller, bool) {
	if ev.Type != "sapi" {
		return enrich.Caller{}, false
	}
	switch strings.ToLower(ev.Details.Request.Method) {
	case "patch", "put", "delete":
	default:
		return enrich.Caller{}, false
	}
	path, _, _ := strings.Cut(ev.Details.Request.Path, "?")
	var kind enrich.Kind
	var rest string
	switch {
	case strings.HasPrefix(path, "/api/v2/clients/"):
		kind, rest = enrich.KindClient, path[len("/api/v2/clients/"):]
	case strings.HasPrefix(path, "/api/v2/users/"):
		kind, rest = enrich.KindUser, path[len("/api/v2/users/"):]
	default:
		return enrich.Caller{}, false
	}
	if rest == "" || strings.Contains(rest, "/") {
		return enrich.Caller{}, false // the collection, or a sub-resource (roles, permissions...)
	}
	id, err := url.PathUnescape(rest)
	if err != nil || id == "" {
		return enrich.Caller{}, false
	}
	return enrich.Caller{Kind: kind, ID: id}, true
}
