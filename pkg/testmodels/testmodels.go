// Package testmodels finds the real model files that tests read from the
// project's shared directory (shared/models beside the checkout, or
// $SEMANTIC_MODELS_DIR). Under CI=true a missing file fails the test: CI must
// never pass by skipping the tests that prove the engine right.
package testmodels

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir is $SEMANTIC_MODELS_DIR, else ../shared/models next to the directory
// holding go.work (found from the working directory upwards).
func Dir() string {
	if dir := os.Getenv("SEMANTIC_MODELS_DIR"); dir != "" {
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return filepath.Join(d, "..", "shared", "models")
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// File returns the path of a file in Dir, skipping the test when it is
// missing (failing it when CI=true).
func File(t testing.TB, name string) string {
	t.Helper()
	dir := Dir()
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("required test model %s missing (dir %q): %v", name, dir, err)
		}
		t.Skipf("test model %s not found: %v", name, err)
	}
	return p
}
