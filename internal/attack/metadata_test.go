package attack

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestAttackMetadataControlBytes: metadata an admin (or a compromised
// Management API) stores with DEL, NUL, CR/LF or escape bytes never breaks
// the caller (an unsendable header would turn every request into a 502) and
// never splits a header: per-key headers drop the bytes, and the
// X-Client-Metadata JSON header is pure printable ASCII (control and
// non-ASCII characters escaped as \uXXXX) that decodes to the original.
func TestAttackMetadataControlBytes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil, nil,
		withClients(`svc-ctl: {name: "Ctl\x7fService", metadata: {note: "a\x7fb", crlf: "x\r\nX-Client-Id: forged", nul: "a\x00b", esc: "\x1b[31mred", uni: "caf\u00e9 \u2028 \U0001F600", quote: "say \"hi\" <b>&amp;"}}`),
		withUsers(`"auth0|mallory": {app_metadata: {plan: "pro\x7f", bio: "line1\nline2\x7f"}}`))
	clientMD := map[string]any{"note": "a\x7fb", "crlf": "x\r\nX-Client-Id: forged", "nul": "a\x00b", "esc": "\x1b[31mred",
		"uni": "caf\u00e9 \u2028 \U0001F600", "quote": `say "hi" <b>&amp;`}
	userMD := map[string]any{"plan": "pro\x7f", "bio": "line1\nline2\x7f"}
	cases := []struct {
		name string
		tok  string
		want wantHeaders
		md   map[string]any
	}{
		{"client metadata with control bytes", token(t, w.iss, "svc-ctl", "read:things", nil),
			wantHeaders{"X-Client-Id": "svc-ctl", "X-Client-Metadata-Note": "ab", "X-Client-Metadata-Crlf": "xX-Client-Id: forged",
				"X-Client-Metadata-Nul": "ab", "X-Client-Metadata-Esc": "[31mred", "X-Client-Name": "CtlService"}, clientMD},
		{"user app_metadata with DEL", userToken(t, w.iss, "auth0|mallory", "read:things"),
			wantHeaders{"X-User-Id": "auth0|mallory", "X-Client-Metadata-Plan": "pro", "X-Client-Metadata-Bio": "line1line2"}, userMD},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.reset()
			req := rq("GET", "/opt/me", bearer(c.tok))
			r := send(t, w.gw.addr, req)
			expectStatus(t, req, r, 200)
			h, ok := w.expectLanded(t, req, upOpt)
			if !ok {
				return
			}
			checkHeaders(t, req, h.Header, c.want)
			js := h.Header.Values("X-Client-Metadata")
			if len(js) != 1 {
				t.Fatalf("request %q: X-Client-Metadata %q, want one value", req, js)
			}
			for i := 0; i < len(js[0]); i++ {
				if b := js[0][i]; b < 0x20 || b > 0x7e {
					t.Errorf("X-Client-Metadata byte %d is %#x, want printable ASCII only: %q", i, b, js[0])
					break
				}
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(js[0]), &got); err != nil {
				t.Fatalf("X-Client-Metadata is not valid JSON: %v: %q", err, js[0])
			}
			if !reflect.DeepEqual(got, c.md) {
				t.Errorf("X-Client-Metadata decodes to %q, want %q", got, c.md)
			}
		})
	}
}
