package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/metagate/gateway/internal/config"
)

// decodeStrict decodes one JSON value as encoding/json would, but refuses
// an object with the same key twice, which encoding/json accepts in
// silence (the last one wins) and log pipelines handle each their own way.
func decodeStrict(line []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	v, err := strictValue(dec, "")
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("more than one JSON value on the line")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object: %T", v)
	}
	return m, nil
}

func strictValue(dec *json.Decoder, path string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		obj := map[string]any{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			k := kt.(string) // object keys are always strings
			if _, dup := obj[k]; dup {
				return nil, fmt.Errorf("duplicate key %q", path+k)
			}
			if obj[k], err = strictValue(dec, path+k+"."); err != nil {
				return nil, err
			}
		}
		_, err := dec.Token() // '}'
		return obj, err
	case json.Delim('['):
		var arr []any
		for i := 0; dec.More(); i++ {
			v, err := strictValue(dec, fmt.Sprintf("%s%d.", path, i))
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		_, err := dec.Token() // ']'
		return arr, err
	}
	return tok, nil
}

func TestDecodeStrictRejectsDuplicateKeys(t *testing.T) {
	for _, bad := range []string{
		`{"caller":"a.go:1","caller":"client x"}`,
		`{"a":{"b":1,"b":2}}`,
		`{"a":[{"c":1,"c":1}]}`,
		`{"a":1} {"b":2}`,
		`[1]`,
	} {
		if _, err := decodeStrict([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	m, err := decodeStrict([]byte(`{"a":1,"b":{"a":2},"c":[{"a":3}]}`))
	if err != nil || m["a"] != json.Number("1") {
		t.Errorf("valid object: %v %v", m, err)
	}
}

// TestAccessLogIsCompleteAndStrict serves the shipped gateway.yaml with
// JSON logs, sends 500 requests, stops with SIGTERM and reads what serve
// wrote: every line is one JSON object without duplicate keys, and every
// request has exactly one access line (nothing sampled away, nothing left
// in the buffer at exit).
func TestAccessLogIsCompleteAndStrict(t *testing.T) {
	env := shippedEnv(t)
	raw, err := os.ReadFile("../../gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(raw), "  format: console\n", "  format: json\n", 1)
	if doc == string(raw) {
		t.Fatal("the shipped gateway.yaml no longer sets log.format: console")
	}
	file := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := runCLI("serve", "--config", file)
		done <- result{code, stderr}
	}()
	gw := "http://" + env["GATEWAY_LISTEN"]
	tok := listeningToken(t, gw, file)

	// 400 callers with a token (200), 100 without (401), from 8 clients
	// at once: well past the 100 lines a second zap's sampler lets by.
	const n, anonymous = 500, 100
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/access-test/%d", gw, i), nil)
				if i >= anonymous {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after SIGTERM")
	}
	if res.code != 0 {
		t.Fatalf("serve exited %d:\n%s", res.code, res.stderr)
	}

	seen := make([]int, n)
	var gcTuned bool
	sc := bufio.NewScanner(strings.NewReader(res.stderr))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		m, err := decodeStrict(line)
		if err != nil {
			t.Errorf("%v in log line %s", err, line)
			continue
		}
		if m["msg"] == "gc tuned" {
			gcTuned = m["gc_percent"] != nil && m["memory_limit_from"] != nil
		}
		if m["logger"] != "access" {
			continue
		}
		path, _ := m["path"].(string)
		var i int
		if _, err := fmt.Sscanf(path, "/access-test/%d", &i); err != nil || i < 0 || i >= n {
			continue // the readiness probe's requests
		}
		seen[i]++
		wantStatus, wantCaller := "200", "client "
		if i < anonymous {
			wantStatus, wantCaller = "401", ""
		}
		caller, _ := m["caller_id"].(string)
		if m["msg"] != "request" || m["method"] != "GET" || m["route"] != "demo" || fmt.Sprint(m["status"]) != wantStatus ||
			!strings.HasPrefix(caller, wantCaller) || (wantCaller != "" && !strings.HasSuffix(caller, " svc-billing")) ||
			m["duration"] == nil {
			t.Errorf("access line %s: want method GET, route demo, status %s, caller_id %q…", line, wantStatus, wantCaller)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for i, k := range seen {
		if k > 1 {
			t.Errorf("request %d logged %d times", i, k)
		}
		if k == 0 {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d requests have no access line", missing, n)
	}
	if !gcTuned {
		t.Error(`no "gc tuned" line with gc_percent and memory_limit_from`)
	}
}

// syncBuffer is a bytes.Buffer safe to read while loggers write to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogsBufferOnlyAccessLines: warnings reach the output at once, access
// lines within the flush interval (or at close), and log.access: false
// means no access logger at all.
func TestLogsBufferOnlyAccessLines(t *testing.T) {
	var out syncBuffer
	l, err := newLogs(config.Log{Format: "json", Level: "warn", Access: true}, &out)
	if err != nil {
		t.Fatal(err)
	}
	l.access.Info("request", zap.String("path", "/first"))
	l.log.Warn("upstream unreachable")
	if s := out.String(); !strings.Contains(s, "upstream unreachable") || strings.Contains(s, "/first") {
		t.Errorf("right after logging, the output is %q: want the warning and not yet the access line", s)
	}
	deadline := time.Now().Add(5 * accessFlushInterval)
	for !strings.Contains(out.String(), "/first") {
		if time.Now().After(deadline) {
			t.Fatalf("the access line was not flushed within %s", 5*accessFlushInterval)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.access.Info("request", zap.String("path", "/last"))
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "/last") {
		t.Error("close did not flush the access log")
	}
	// log.level warn hides info messages of the gateway, not access lines.
	l.log.Info("hidden")
	if strings.Contains(out.String(), "hidden") {
		t.Error("log.level warn let an info line through")
	}

	off, err := newLogs(config.Log{Format: "console", Level: "info", Access: false}, &out)
	if err != nil {
		t.Fatal(err)
	}
	if off.access != nil {
		t.Error("log.access false still built an access logger")
	}
	if err := off.close(); err != nil {
		t.Error(err)
	}
}
