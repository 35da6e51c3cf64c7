// Package gctune picks the Go garbage collector's two settings for a proxy:
// a soft memory limit below the container's cgroup limit, and a GC percent
// well above Go's default of 100 while the heap is far from that limit.
//
// A proxy's heap is mostly per-request garbage over a small live set
// (caches, connections), so collecting less often saves CPU at the price
// of memory headroom. The soft limit is what makes that price safe: as the
// heap nears it the collector runs as often as it must, whatever the GC
// percent says, so the process stays clear of the OOM killer. Without a
// limit the heap could reach (1 + GC percent/100) times the live set, so
// Go's default is kept.
//
// Decide is pure (environment and cgroup files are passed in); Apply is
// the one call that changes process-wide runtime state.
package gctune

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

const (
	// CgroupV2File holds the cgroup v2 memory limit ("max": none), as seen
	// from inside a container with its own cgroup namespace.
	CgroupV2File = "/sys/fs/cgroup/memory.max"
	// CgroupV1File holds the cgroup v1 memory limit; an unlimited cgroup
	// reports a huge number (math.MaxInt64 rounded down to a page).
	CgroupV1File = "/sys/fs/cgroup/memory/memory.limit_in_bytes"

	// LimitedGCPercent is the default GC percent under a memory limit.
	LimitedGCPercent = 400
	// DefaultGCPercent is Go's own default, kept when there is no limit.
	DefaultGCPercent = 100

	// cgroupShareTenths is the soft limit as a share of the cgroup's. The
	// rest is for memory the Go runtime does not count but the cgroup
	// does: kernel socket buffers of thousands of connections, page cache,
	// and the heap overshooting the soft limit briefly.
	cgroupShareTenths = 9
	// v1Unlimited: cgroup v1 values at or above this mean "no limit".
	v1Unlimited = 1 << 60
)

// Where a value came from, in Settings.GCPercentFrom and MemoryLimitFrom.
const (
	FromConfig  = "config"  // server.gc_percent, server.memory_limit
	FromEnv     = "env"     // GOGC, GOMEMLIMIT
	FromCgroup  = "cgroup"  // a share of the cgroup limit
	FromDefault = "default" // nothing set: the built-in choice (no limit, or 100/400)
)

const (
	configGC    = "server.gc_percent"
	configLimit = "server.memory_limit"
	envGOGC     = "GOGC"
	envLimit    = "GOMEMLIMIT"
	autoLimit   = "auto" // server.memory_limit's default
	offValue    = "off"  // GOGC=off, GOMEMLIMIT=off
)

// Want is what the configuration asks for.
type Want struct {
	// GCPercent is server.gc_percent; nil picks the default.
	GCPercent *int
	// MemoryLimit is server.memory_limit: "auto" (or empty), "0" (none)
	// or a size such as "512MiB".
	MemoryLimit string
}

// Env is where Decide looks besides the configuration.
type Env struct {
	LookupEnv    func(string) (string, bool) // nil: os.LookupEnv
	CgroupV2File string                      // empty: CgroupV2File
	CgroupV1File string                      // empty: CgroupV1File
}

// Settings is a decision, with where each value came from so the log can
// say why the process runs the way it does.
type Settings struct {
	GCPercent       int // -1: the collector is off
	GCPercentFrom   string
	MemoryLimit     int64 // bytes; 0: none
	MemoryLimitFrom string
	// CgroupLimit is the limit read from CgroupFile (0: none found); it
	// is reported even when the config or the environment overrode it.
	CgroupLimit int64
	CgroupFile  string
}

// Decide applies the precedence: an explicit config key, then the Go
// runtime's own environment variable (GOMEMLIMIT, GOGC), then the default
// (90% of the cgroup limit; GC percent 400 under a limit, 100 without).
// The config wins over the environment because the file is the gateway's
// documented interface (and can itself read ${GOMEMLIMIT}); the
// environment wins over the default so an operator's usual Go knobs work.
func Decide(w Want, env Env) (Settings, error) {
	if env.LookupEnv == nil {
		env.LookupEnv = os.LookupEnv
	}
	if env.CgroupV2File == "" {
		env.CgroupV2File = CgroupV2File
	}
	if env.CgroupV1File == "" {
		env.CgroupV1File = CgroupV1File
	}
	var s Settings
	// A cgroup file that cannot be read only matters when nothing else
	// sets the limit.
	var cgroupErr error
	s.CgroupLimit, s.CgroupFile, cgroupErr = ReadCgroupLimit(env.CgroupV2File, env.CgroupV1File)

	limit, auto, err := ParseMemoryLimit(w.MemoryLimit)
	if err != nil {
		return s, fmt.Errorf("%s: %w", configLimit, err)
	}
	switch v, set := lookup(env.LookupEnv, envLimit); {
	case !auto:
		s.MemoryLimit, s.MemoryLimitFrom = limit, FromConfig
	case set:
		if v == offValue {
			s.MemoryLimit = 0
		} else if s.MemoryLimit, err = parseSize(v, true); err != nil {
			return s, fmt.Errorf("%s=%q: %w", envLimit, v, err)
		}
		s.MemoryLimitFrom = FromEnv
	case cgroupErr != nil:
		return s, fmt.Errorf("%s: auto: %w", configLimit, cgroupErr)
	case s.CgroupLimit > 0:
		s.MemoryLimit, s.MemoryLimitFrom = s.CgroupLimit/10*cgroupShareTenths, FromCgroup
	default:
		s.MemoryLimitFrom = FromDefault
	}

	switch v, set := lookup(env.LookupEnv, envGOGC); {
	case w.GCPercent != nil:
		s.GCPercent, s.GCPercentFrom = *w.GCPercent, FromConfig
	case set:
		if s.GCPercent, err = parseGOGC(v); err != nil {
			return s, fmt.Errorf("%s=%q: %w", envGOGC, v, err)
		}
		s.GCPercentFrom = FromEnv
	case s.MemoryLimit > 0:
		s.GCPercent, s.GCPercentFrom = LimitedGCPercent, FromDefault
	default:
		s.GCPercent, s.GCPercentFrom = DefaultGCPercent, FromDefault
	}
	if s.GCPercent < 0 && s.MemoryLimit == 0 {
		// With neither, the heap grows until the kernel kills the process.
		key := configGC + ": -1"
		if s.GCPercentFrom == FromEnv {
			key = envGOGC + "=off"
		}
		return s, fmt.Errorf("%s turns the garbage collector off, which needs a memory limit, and none is in effect: set %s or %s, or run under a cgroup memory limit",
			key, configLimit, envLimit)
	}
	return s, nil
}

// Apply sets the GC percent and memory limit of this process and returns
// a function that puts the previous values back. The limit is set first,
// so the collector is never off without it, even for an instant.
func (s Settings) Apply() (restore func()) {
	limit := s.MemoryLimit
	if limit == 0 {
		limit = math.MaxInt64 // the runtime's "no limit"
	}
	prevLimit := debug.SetMemoryLimit(limit)
	prevPercent := debug.SetGCPercent(s.GCPercent)
	return func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	}
}

// Current reports the process's GC percent (-1: off) and soft memory
// limit in bytes (0: none), as the runtime has them now, whoever set them.
// Reading them through runtime/metrics changes nothing, unlike calling
// debug.SetGCPercent to learn the old value.
func Current() (gcPercent int, memoryLimit int64) {
	ms := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(ms)
	// The runtime stores -1 (off) and reports it as a uint64.
	gcPercent = int(int64(ms[0].Value.Uint64()))
	if gcPercent < 0 {
		gcPercent = -1
	}
	if l := ms[1].Value.Uint64(); l < math.MaxInt64 {
		memoryLimit = int64(l)
	}
	return gcPercent, memoryLimit
}

// ReadCgroupLimit returns the memory limit of the cgroup v2 file, or when
// that file does not exist the cgroup v1 file, and the file it came from;
// 0 means no limit (an absent file, "max", or v1's huge "unlimited").
func ReadCgroupLimit(v2File, v1File string) (limit int64, file string, err error) {
	raw, err := os.ReadFile(v2File)
	if err == nil {
		v := strings.TrimSpace(string(raw))
		if v == "max" {
			return 0, v2File, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return 0, v2File, fmt.Errorf("read cgroup memory limit: %s holds %q, not a byte count or max", v2File, v)
		}
		return n, v2File, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return 0, v2File, fmt.Errorf("read cgroup memory limit: %w", err)
	}
	raw, err = os.ReadFile(v1File)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, v1File, fmt.Errorf("read cgroup memory limit: %w", err)
	}
	v := strings.TrimSpace(string(raw))
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, v1File, fmt.Errorf("read cgroup memory limit: %s holds %q, not a byte count", v1File, v)
	}
	if n >= v1Unlimited {
		return 0, v1File, nil
	}
	return int64(n), v1File, nil
}

// ParseMemoryLimit reads a server.memory_limit value: "auto" (or empty)
// reports auto, "0" means no limit, anything else is a whole number with a
// unit: B, KiB, MiB, GiB or TiB (GOMEMLIMIT's units). A bare number is
// refused because its unit would be a guess: "512" is far more likely a
// MiB count than a 512-byte limit.
func ParseMemoryLimit(v string) (bytes int64, auto bool, err error) {
	switch v = strings.TrimSpace(v); v {
	case "", autoLimit:
		return 0, true, nil
	case "0":
		return 0, false, nil
	}
	n, err := parseSize(v, false)
	return n, false, err
}

var units = []struct {
	suffix string
	shift  uint
}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}

// parseSize reads "<digits><unit>"; bareOK accepts plain digits as bytes,
// as GOMEMLIMIT does.
func parseSize(v string, bareOK bool) (int64, error) {
	digits, shift, found := v, uint(0), false
	for _, u := range units {
		if d, ok := strings.CutSuffix(v, u.suffix); ok {
			digits, shift, found = d, u.shift, true
			break
		}
	}
	if !found && !bareOK {
		return 0, fmt.Errorf("%q is not a size: use a whole number with B, KiB, MiB, GiB or TiB, such as 512MiB (or 0 for none, auto for the cgroup-derived default)", v)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || digits == "" || digits[0] == '+' {
		return 0, fmt.Errorf("%q is not a size such as 512MiB", v)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return n << shift, nil
}

// parseGOGC reads GOGC as the runtime does ("off" or a percent); unlike
// the runtime, which falls back to 100 in silence, it refuses anything
// else, so a typo is seen at startup.
func parseGOGC(v string) (int, error) {
	if v == offValue {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errors.New("not a percent or off")
	}
	return max(n, -1), nil
}

// lookup treats an empty variable as unset, as the runtime does.
func lookup(env func(string) (string, bool), key string) (string, bool) {
	v, ok := env(key)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}
