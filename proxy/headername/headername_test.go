package headername

import "testing"

// TestFolding: the names an upstream would read as the same header are
// the same here, and only those.
func TestFolding(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		has, equal   bool
	}{
		{"X-Client-Id", "X-Client-", true, false},
		{"x-client-id", "X-CLIENT-", true, false},
		{"X_Client_Id", "X-Client-", true, false},
		{"X-Client-Id", "x_client_id", true, true},
		{"X-Clients", "X-Client-", false, false},
		{"X-Client", "X-Client-", false, false},
		{"X-Client-Id", "", true, false},
	} {
		if got := HasPrefix(tc.name, tc.prefix); got != tc.has {
			t.Errorf("HasPrefix(%q, %q) = %v, want %v", tc.name, tc.prefix, got, tc.has)
		}
		if got := Equal(tc.name, tc.prefix); got != tc.equal {
			t.Errorf("Equal(%q, %q) = %v, want %v", tc.name, tc.prefix, got, tc.equal)
		}
	}
}
