package enrich

import (
	"reflect"
	"testing"
)

// TestCodecRoundTripKeepsThePreparedForm: what the shared cache tier
// stores is rebuilt from the prepared form (Prepare drops the maps), and
// reading it back prepares the very same headers.
func TestCodecRoundTripKeepsThePreparedForm(t *testing.T) {
	for name, rec := range map[string]Record{
		"client with scalars and nesting": {Name: "Billing Service", Metadata: map[string]any{
			"tier": "gold", "limit": 10.5, "beta": true, "roles": []any{"a", "b"}, "note": "caf\u00e9 \x7f <&>"}},
		"user with user_metadata": {Metadata: map[string]any{"plan": "pro"}, UserMetadata: map[string]any{"theme": "dark"}},
		"no metadata":             {Name: "Bare"},
	} {
		t.Run(name, func(t *testing.T) {
			md, err := Prepare(rec)
			if err != nil {
				t.Fatal(err)
			}
			if md.Record.Metadata != nil || md.Record.UserMetadata != nil {
				t.Error("Prepare kept the metadata maps")
			}
			b, err := Codec{}.Marshal(md)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Codec{}.Unmarshal(b)
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", b, err)
			}
			if !reflect.DeepEqual(back.Fields, md.Fields) || string(back.JSON) != string(md.JSON) ||
				string(back.UserJSON) != string(md.UserJSON) || back.Record.Name != md.Record.Name {
				t.Errorf("round trip changed the prepared form:\n got %+v\nwant %+v", back, md)
			}
		})
	}
}
