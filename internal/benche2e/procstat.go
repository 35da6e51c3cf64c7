// Package benche2e is the end-to-end benchmark behind `make bench-e2e`: the
// gateway and a bare httputil.ReverseProxy, each a real process, driven in
// turn with the same load over real sockets. This package holds the parts
// worth testing (the /proc reader, percentiles, the load generator) and the
// fixtures the programs under cmd/ share; docs/benchmarks.md has the method.
package benche2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (sysconf(_SC_CLK_TCK)
// reports it, but reading it needs cgo).
const ClockTicks = 100

// ParseStat returns utime and stime (fields 14 and 15 of proc(5)'s
// /proc/<pid>/stat, in clock ticks) from the content of that file. The
// second field, the command name in parentheses, may itself contain spaces
// and parentheses, so fields are counted from the last ')'.
func ParseStat(stat string) (utime, stime uint64, err error) {
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("proc stat: no ')' after the command name")
	}
	// After ") ": field 3 (state) is rest[0], so field n is rest[n-3].
	rest := strings.Fields(stat[end+1:])
	if len(rest) < 13 {
		return 0, 0, fmt.Errorf("proc stat: %d fields after the command name, want at least 13", len(rest))
	}
	if utime, err = strconv.ParseUint(rest[14-3], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: utime: %w", err)
	}
	if stime, err = strconv.ParseUint(rest[15-3], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("proc stat: stime: %w", err)
	}
	return utime, stime, nil
}

// CPUTicks is utime+stime of process pid (all its threads), in clock ticks.
func CPUTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	u, s, err := ParseStat(string(b))
	if err != nil {
		return 0, err
	}
	return u + s, nil
}

// CPUMicrosPerRequest turns a CPUTicks delta into microseconds per request.
func CPUMicrosPerRequest(ticks uint64, requests int) float64 {
	if requests <= 0 {
		return 0
	}
	return float64(ticks) * 1e6 / ClockTicks / float64(requests)
}
