package model

import (
	"testing"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// TestCodecsMatchSupportedTypes: every supported type but F32 has a codec
// and no codec is for a type the engine does not multiply with.
func TestCodecsMatchSupportedTypes(t *testing.T) {
	for _, typ := range SupportedTypes {
		if _, ok := codecs[typ]; !ok && typ != gguf.TensorF32 {
			t.Errorf("%v is supported but has no codec", typ)
		}
	}
	if len(codecs)+1 != len(SupportedTypes) {
		t.Errorf("%d codecs for %d supported types (F32 included)", len(codecs), len(SupportedTypes))
	}
}
