// Package testmodels finds the real model files that tests read from the
// project's shared directory (shared/models beside the checkout, or
// $SEMANTIC_MODELS_DIR), and the other shared test material (shared/, or
// $SEMANTIC_SHARED_DIR): the Llama 3.2 vocabulary and its reference
// tokenizations. Under CI=true a missing file fails the test: CI must
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
	return need(t, Dir(), name, "test model")
}

// SharedDir is $SEMANTIC_SHARED_DIR, else the directory that holds Dir()
// (../shared next to go.work): the shared material beside the models, such
// as tokenizers/.
func SharedDir() string {
	if dir := os.Getenv("SEMANTIC_SHARED_DIR"); dir != "" {
		return dir
	}
	if dir := Dir(); dir != "" {
		return filepath.Dir(dir)
	}
	return ""
}

// Shared returns the path of a file in SharedDir, such as
// "tokenizers/llama3.2/encoder.json", skipping the test when it is missing
// (failing it when CI=true).
func Shared(t testing.TB, name string) string {
	t.Helper()
	return need(t, SharedDir(), name, "shared test file")
}

func need(t testing.TB, dir, name, what string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("required %s %s missing (dir %q): %v", what, name, dir, err)
		}
		t.Skipf("%s %s not found: %v", what, name, err)
	}
	return p
}
