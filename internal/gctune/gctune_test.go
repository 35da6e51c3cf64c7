package gctune

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// cgroupFiles writes the given contents as the v2 and v1 files; "" leaves
// a file out, as on a host without that cgroup version.
func cgroupFiles(t *testing.T, v2, v1 string) Env {
	t.Helper()
	dir := t.TempDir()
	e := Env{CgroupV2File: filepath.Join(dir, "memory.max"), CgroupV1File: filepath.Join(dir, "memory.limit_in_bytes")}
	for file, content := range map[string]string{e.CgroupV2File: v2, e.CgroupV1File: v1} {
		if content == "" {
			continue
		}
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func TestReadCgroupLimit(t *testing.T) {
	cases := []struct {
		name, v2, v1 string
		want         int64
		wantFile     string // "v2", "v1" or ""
		wantErr      string
	}{
		{"v2 limit", "1073741824\n", "", 1 << 30, "v2", ""},
		{"v2 unlimited", "max\n", "", 0, "v2", ""},
		{"v2 wins over v1", "536870912\n", "1073741824\n", 512 << 20, "v2", ""},
		{"v1 limit", "", "268435456\n", 256 << 20, "v1", ""},
		{"v1 unlimited", "", "9223372036854771712\n", 0, "v1", ""},
		{"no cgroup files", "", "", 0, "", ""},
		{"v2 garbage", "lots\n", "", 0, "v2", "not a byte count or max"},
		{"v1 garbage", "", "-1\n", 0, "v1", "not a byte count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := cgroupFiles(t, tc.v2, tc.v1)
			got, file, err := ReadCgroupLimit(e.CgroupV2File, e.CgroupV1File)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), file) {
					t.Fatalf("err = %v, want one naming %s and saying %q", err, file, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantFile := map[string]string{"v2": e.CgroupV2File, "v1": e.CgroupV1File, "": ""}[tc.wantFile]
			if got != tc.want || file != wantFile {
				t.Errorf("got %d from %q, want %d from %q", got, file, tc.want, wantFile)
			}
		})
	}
}

func intp(n int) *int { return &n }

func TestDecide(t *testing.T) {
	const gib = 1 << 30
	cases := []struct {
		name         string
		want         Want
		v2, v1       string
		env          map[string]string
		gc           int
		gcFrom       string
		limit        int64
		limitFrom    string
		errSubstring string
	}{
		{name: "v2 limit: 90% of it, GC percent 400", v2: "2147483648", gc: 400, gcFrom: FromDefault, limit: 2 * gib / 10 * 9, limitFrom: FromCgroup},
		{name: "v1 limit", v1: "1073741824", gc: 400, gcFrom: FromDefault, limit: gib / 10 * 9, limitFrom: FromCgroup},
		{name: "no cgroup limit: Go's defaults", v2: "max", gc: 100, gcFrom: FromDefault, limit: 0, limitFrom: FromDefault},
		{name: "no cgroup at all", gc: 100, gcFrom: FromDefault, limit: 0, limitFrom: FromDefault},
		{name: "GOMEMLIMIT wins over the cgroup", v2: "2147483648", env: map[string]string{"GOMEMLIMIT": "1GiB"}, gc: 400, gcFrom: FromDefault, limit: gib, limitFrom: FromEnv},
		{name: "GOMEMLIMIT in bare bytes", env: map[string]string{"GOMEMLIMIT": "104857600"}, gc: 400, gcFrom: FromDefault, limit: 100 << 20, limitFrom: FromEnv},
		{name: "GOMEMLIMIT=off beats the cgroup", v2: "2147483648", env: map[string]string{"GOMEMLIMIT": "off"}, gc: 100, gcFrom: FromDefault, limit: 0, limitFrom: FromEnv},
		{name: "GOGC wins over the default", v2: "2147483648", env: map[string]string{"GOGC": "200"}, gc: 200, gcFrom: FromEnv, limit: 2 * gib / 10 * 9, limitFrom: FromCgroup},
		{name: "GOGC=off under a limit", v2: "2147483648", env: map[string]string{"GOGC": "off"}, gc: -1, gcFrom: FromEnv, limit: 2 * gib / 10 * 9, limitFrom: FromCgroup},
		{name: "empty variables count as unset", v2: "2147483648", env: map[string]string{"GOGC": "", "GOMEMLIMIT": " "}, gc: 400, gcFrom: FromDefault, limit: 2 * gib / 10 * 9, limitFrom: FromCgroup},
		{name: "explicit limit wins over env and cgroup", want: Want{MemoryLimit: "512MiB"}, v2: "2147483648", env: map[string]string{"GOMEMLIMIT": "1GiB"}, gc: 400, gcFrom: FromDefault, limit: 512 << 20, limitFrom: FromConfig},
		{name: "explicit 0: no limit despite the cgroup", want: Want{MemoryLimit: "0"}, v2: "2147483648", gc: 100, gcFrom: FromDefault, limit: 0, limitFrom: FromConfig},
		{name: "explicit GC percent wins over GOGC", want: Want{GCPercent: intp(250)}, env: map[string]string{"GOGC": "50"}, gc: 250, gcFrom: FromConfig, limitFrom: FromDefault},
		{name: "explicit GC off with an explicit limit", want: Want{GCPercent: intp(-1), MemoryLimit: "1GiB"}, gc: -1, gcFrom: FromConfig, limit: gib, limitFrom: FromConfig},
		{name: "explicit GC off, auto limit from the cgroup", want: Want{GCPercent: intp(-1), MemoryLimit: "auto"}, v1: "1073741824", gc: -1, gcFrom: FromConfig, limit: gib / 10 * 9, limitFrom: FromCgroup},
		{name: "GC off without any limit", want: Want{GCPercent: intp(-1)}, v2: "max", errSubstring: "server.gc_percent: -1 turns the garbage collector off, which needs a memory limit"},
		{name: "GOGC=off without any limit", env: map[string]string{"GOGC": "off"}, errSubstring: "GOGC=off turns the garbage collector off"},
		{name: "bad GOGC", env: map[string]string{"GOGC": "lots"}, errSubstring: `GOGC="lots"`},
		{name: "bad GOMEMLIMIT", env: map[string]string{"GOMEMLIMIT": "1GB"}, errSubstring: `GOMEMLIMIT="1GB"`},
		{name: "bad config limit", want: Want{MemoryLimit: "512"}, errSubstring: "server.memory_limit"},
		{name: "unreadable cgroup file", v2: "garbage", errSubstring: "memory.max"},
		{name: "unreadable cgroup file, limit set anyway", want: Want{MemoryLimit: "1GiB"}, v2: "garbage", gc: 400, gcFrom: FromDefault, limit: gib, limitFrom: FromConfig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := cgroupFiles(t, tc.v2, tc.v1)
			e.LookupEnv = func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			s, err := Decide(tc.want, e)
			if tc.errSubstring != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstring) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errSubstring)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.GCPercent != tc.gc || s.GCPercentFrom != tc.gcFrom || s.MemoryLimit != tc.limit || s.MemoryLimitFrom != tc.limitFrom {
				t.Errorf("got gc_percent %d (%s), memory_limit %d (%s); want %d (%s), %d (%s)",
					s.GCPercent, s.GCPercentFrom, s.MemoryLimit, s.MemoryLimitFrom, tc.gc, tc.gcFrom, tc.limit, tc.limitFrom)
			}
		})
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1B": 1, "64KiB": 64 << 10, "512MiB": 512 << 20, "2GiB": 2 << 30, "1TiB": 1 << 40, " 3GiB ": 3 << 30} {
		got, auto, err := ParseMemoryLimit(in)
		if err != nil || auto || got != want {
			t.Errorf("%q: %d auto=%v err=%v, want %d", in, got, auto, err, want)
		}
	}
	for _, in := range []string{"", "auto"} {
		if _, auto, err := ParseMemoryLimit(in); !auto || err != nil {
			t.Errorf("%q: auto=%v err=%v, want auto", in, auto, err)
		}
	}
	for _, in := range []string{"512", "1GB", "1.5GiB", "-1GiB", "+1GiB", "GiB", "lots", "max", "9999999TiB"} {
		if _, _, err := ParseMemoryLimit(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

// TestApplyAndCurrent sets the process's values, reads them back as the
// metrics do, and restores them.
func TestApplyAndCurrent(t *testing.T) {
	restore := Settings{GCPercent: 321, MemoryLimit: 3 << 30}.Apply()
	gc, limit := Current()
	if gc != 321 || limit != 3<<30 {
		t.Errorf("after Apply: gc_percent %d, memory_limit %d", gc, limit)
	}
	restoreOff := Settings{GCPercent: -1, MemoryLimit: 1 << 30}.Apply()
	if gc, _ := Current(); gc != -1 {
		t.Errorf("GC off reads as %d, want -1", gc)
	}
	restoreOff()
	restoreNone := Settings{GCPercent: 100}.Apply()
	if _, limit := Current(); limit != 0 {
		t.Errorf("no limit reads as %d, want 0", limit)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("no limit set the runtime's limit to %d, want math.MaxInt64", got)
	}
	restoreNone()
	restore()
	if gc, limit := Current(); gc == 321 || limit == 3<<30 {
		t.Errorf("restore left gc_percent %d, memory_limit %d", gc, limit)
	}
}
