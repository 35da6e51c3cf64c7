package proxy_test

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/metagate/gateway"

// libraryLayers are the public library packages, lowest first: a package
// may import its own layer and the ones below it, never one above, and
// never anything under internal/ (a library user's import graph would
// then hold a package they cannot import themselves).
var libraryLayers = []string{"cache", "enrich", "proxy"}

// TestLibraryImportsStayOneWay reads the real import graph of proxy,
// enrich and cache (and their subpackages) with go list: none of them
// may reach an internal package, cache may not reach enrich or proxy,
// and enrich may not reach proxy.
func TestLibraryImportsStayOneWay(t *testing.T) {
	args := []string{"list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`}
	for _, l := range libraryLayers {
		args = append(args, module+"/"+l+"/...")
	}
	out, err := exec.Command("go", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	graph := parseGraph(string(out))
	if len(graph) < len(libraryLayers) {
		t.Fatalf("go list found %d packages, want at least %d:\n%s", len(graph), len(libraryLayers), out)
	}
	for _, problem := range backArrows(graph) {
		t.Error(problem)
	}
}

// TestBackArrowsAreFound: the check above can fail, for each kind of
// arrow the layering forbids, and lets the allowed ones through.
func TestBackArrowsAreFound(t *testing.T) {
	graph := parseGraph(strings.Join([]string{
		module + "/proxy " + module + "/internal/headername " + module + "/enrich " + module + "/cache net/http",
		module + "/enrich " + module + "/cache " + module + "/proxy/canon",
		module + "/cache " + module + "/enrich",
		module + "/proxy/canon",
	}, "\n"))
	got := backArrows(graph)
	want := []string{
		module + "/cache imports " + module + "/enrich, a layer above it (cache → enrich → proxy run one way)",
		module + "/enrich imports " + module + "/proxy/canon, a layer above it (cache → enrich → proxy run one way)",
		module + "/proxy imports " + module + "/internal/headername: a library package must not import an internal one",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// parseGraph reads go list's "package dep dep..." lines.
func parseGraph(out string) map[string][]string {
	graph := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph
}

// backArrows lists every import in graph that breaks the layering, sorted.
func backArrows(graph map[string][]string) []string {
	var problems []string
	for pkg, deps := range graph {
		from := layerOf(pkg)
		for _, dep := range deps {
			switch {
			case strings.HasPrefix(dep, module+"/internal/"):
				problems = append(problems, pkg+" imports "+dep+": a library package must not import an internal one")
			case layerOf(dep) > from:
				problems = append(problems, pkg+" imports "+dep+", a layer above it (cache → enrich → proxy run one way)")
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// layerOf is the index in libraryLayers of the package's top folder, -1
// for a package outside them (the standard library, other modules).
func layerOf(pkg string) int {
	rest, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return -1
	}
	top, _, _ := strings.Cut(rest, "/")
	for i, l := range libraryLayers {
		if top == l {
			return i
		}
	}
	return -1
}
