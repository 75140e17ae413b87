package testproc

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// ForbidDeps fails t when the package in the test's working directory
// depends, directly or through others, on a package at or under one of the
// forbidden import paths (its tests' imports do not count). It asks the go
// tool (`go list -deps`), so it sees what the build links, and it returns
// the dependencies it checked.
func ForbidDeps(t testing.TB, forbidden ...string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.Bytes())
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps listed nothing")
	}
	for _, d := range deps {
		if slices.ContainsFunc(forbidden, func(f string) bool { return d == f || strings.HasPrefix(d, f+"/") }) {
			t.Errorf("%s depends on %s, which it must not", deps[len(deps)-1], d)
		}
	}
	return deps
}
