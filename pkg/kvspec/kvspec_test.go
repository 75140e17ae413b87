package kvspec

import (
	"errors"
	"testing"
)

func validSpec() Spec {
	return Spec{Layers: 2, KVHeads: 2, HeadDim: 4, TokensPerBlock: 3, DType: DTypeFloat32, ModelTag: "m"}
}

func TestLayoutOffsets(t *testing.T) {
	s := validSpec()
	// 3 tokens x 2 heads x 4 dims x 4 bytes = 96 bytes per section.
	if s.SectionBytes() != 96 || s.BlockBytes() != 4*96 {
		t.Fatalf("section %d block %d", s.SectionBytes(), s.BlockBytes())
	}
	if s.KOffset(0) != 0 || s.VOffset(0) != 96 || s.KOffset(1) != 192 || s.VOffset(1) != 288 {
		t.Fatal("K then V per layer")
	}
	s.DType = DTypeFloat16
	if s.BlockBytes() != 2*96 {
		t.Fatalf("float16 halves the block: %d", s.BlockBytes())
	}
	if s.BlocksFor(0) != 0 || s.BlocksFor(1) != 1 || s.BlocksFor(3) != 1 || s.BlocksFor(4) != 2 {
		t.Fatal("BlocksFor")
	}
}

func TestValidateNamesTheField(t *testing.T) {
	cases := map[string]func(*Spec){
		"layers":           func(s *Spec) { s.Layers = 0 },
		"kv_heads":         func(s *Spec) { s.KVHeads = MaxKVHeads + 1 },
		"head_dim":         func(s *Spec) { s.HeadDim = -1 },
		"tokens_per_block": func(s *Spec) { s.TokensPerBlock = 0 },
		"dtype":            func(s *Spec) { s.DType = 9 },
		"model_tag":        func(s *Spec) { s.ModelTag = "" },
	}
	for field, mutate := range cases {
		s := validSpec()
		mutate(&s)
		err := s.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != field || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: got %v", field, err)
		}
	}
	if err := validSpec().Validate(); err != nil {
		t.Fatal(err)
	}
	big := Spec{Layers: 256, KVHeads: 256, HeadDim: 1024, TokensPerBlock: 1024, DType: DTypeFloat32, ModelTag: "m"}
	if err := big.Validate(); err == nil {
		t.Fatal("a block over MaxBlockBytes must be refused")
	}
}

func TestChainHash(t *testing.T) {
	toks := []uint32{1, 2, 3, 4, 5, 6, 7}
	hs := ChainHashes(toks, 3, "m", "", false)
	if len(hs) != 2 {
		t.Fatalf("full blocks only: %d", len(hs))
	}
	withTail := ChainHashes(toks, 3, "m", "", true)
	if len(withTail) != 3 || withTail[0] != hs[0] || withTail[1] != hs[1] {
		t.Fatal("tail hash must extend the same chain")
	}
	if hs[1] != ChainHash(hs[0], toks[3:6], "m", "") {
		t.Fatal("chained")
	}
	// Every input matters: parent, tokens, model, salt.
	base := ChainHash(Hash{}, toks[:3], "m", "")
	for name, h := range map[string]Hash{
		"parent": ChainHash(hs[1], toks[:3], "m", ""),
		"tokens": ChainHash(Hash{}, []uint32{1, 2, 4}, "m", ""),
		"model":  ChainHash(Hash{}, toks[:3], "m2", ""),
		"salt":   ChainHash(Hash{}, toks[:3], "m", "tenant"),
		"length": ChainHash(Hash{}, toks[:2], "m", ""),
	} {
		if h == base {
			t.Errorf("%s does not change the hash", name)
		}
	}
	if _, err := HashFromBytes(make([]byte, 31)); err == nil {
		t.Fatal("short hash accepted")
	}
}

func TestChecksumChunked(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	crc := uint32(0)
	for i := 0; i < len(data); i += 5 {
		crc = UpdateChecksum(crc, data[i:min(i+5, len(data))])
	}
	if crc != Checksum(data) {
		t.Fatal("chunked CRC differs")
	}
}

// The chain hash must be a pure function that never collides model/salt
// boundaries: moving bytes between model tag and salt changes the hash.
func FuzzChainHash(f *testing.F) {
	f.Add([]byte{1, 2, 3}, "model", "salt")
	f.Add([]byte{}, "", "")
	f.Fuzz(func(t *testing.T, raw []byte, model, salt string) {
		toks := make([]uint32, len(raw))
		for i, b := range raw {
			toks[i] = uint32(b)
		}
		h := ChainHash(Hash{}, toks, model, salt)
		if h != ChainHash(Hash{}, toks, model, salt) {
			t.Fatal("not deterministic")
		}
		if len(model) > 0 && ChainHash(Hash{}, toks, model[1:], model[:1]+salt) == h {
			t.Fatal("model/salt boundary collision")
		}
	})
}

func TestParseDType(t *testing.T) {
	for _, d := range []DType{DTypeFloat32, DTypeFloat16, DTypeQ8_0, DTypeQ4_0} {
		if got, err := ParseDType(d.String()); err != nil || got != d {
			t.Errorf("ParseDType(%q) = %v, %v", d.String(), got, err)
		}
	}
	for name, want := range map[string]DType{"f32": DTypeFloat32, "f16": DTypeFloat16} {
		if got, err := ParseDType(name); err != nil || got != want {
			t.Errorf("ParseDType(%q) = %v, %v", name, got, err)
		}
	}
	if DTypeQ8_0.String() != "q8_0" || DTypeQ4_0.String() != "q4_0" || DType(5).String() != "dtype(5)" {
		t.Errorf("names: %v %v %v", DTypeQ8_0, DTypeQ4_0, DType(5))
	}
	for _, bad := range []string{"", "float64", "FLOAT32", "bf16", "q8", "Q8_0", "q4_1"} {
		if _, err := ParseDType(bad); err == nil {
			t.Errorf("ParseDType(%q) accepted", bad)
		}
	}
}

// TestQuantizedLayout: a q8_0/q4_0 row is one 34/18-byte block per 32
// elements, a section TokensPerBlock rows, and the offsets follow.
func TestQuantizedLayout(t *testing.T) {
	s := Spec{Layers: 3, KVHeads: 2, HeadDim: 48, TokensPerBlock: 5, DType: DTypeQ8_0, ModelTag: "m"}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// 96 elements a row = 3 groups.
	if s.RowBytes() != 3*34 || s.SectionBytes() != 5*3*34 || s.BlockBytes() != 2*3*5*3*34 {
		t.Fatalf("q8_0: row %d section %d block %d", s.RowBytes(), s.SectionBytes(), s.BlockBytes())
	}
	if s.KOffset(2) != 4*s.SectionBytes() || s.VOffset(2) != 5*s.SectionBytes() {
		t.Fatal("q8_0 offsets")
	}
	s.DType = DTypeQ4_0
	if s.RowBytes() != 3*18 || s.BlockBytes() != 2*3*5*3*18 || s.VOffset(0) != 5*3*18 {
		t.Fatalf("q4_0: row %d block %d", s.RowBytes(), s.BlockBytes())
	}
	for d, want := range map[DType]int{DTypeFloat32: 96 * 4, DTypeFloat16: 96 * 2, DTypeQ8_0: 102, DTypeQ4_0: 54} {
		if got := d.RowBytes(96); got != want {
			t.Errorf("%v.RowBytes(96) = %d, want %d", d, got, want)
		}
	}
	for _, bad := range []struct {
		d DType
		n int
	}{{DTypeQ8_0, 31}, {DTypeQ4_0, 48}, {DTypeFloat32, -1}, {DTypeUnspecified, 32}, {DType(9), 32}} {
		if got := bad.d.RowBytes(bad.n); got != 0 {
			t.Errorf("%v.RowBytes(%d) = %d, want 0", bad.d, bad.n, got)
		}
	}
}

// TestQuantizedNeedsWholeGroups: q8_0 and q4_0 refuse a row that is not a
// multiple of 32 elements, naming the dtype field; the float types accept it.
func TestQuantizedNeedsWholeGroups(t *testing.T) {
	s := Spec{Layers: 1, KVHeads: 3, HeadDim: 8, TokensPerBlock: 4, ModelTag: "m"} // 24-element rows
	for _, d := range []DType{DTypeQ8_0, DTypeQ4_0} {
		s.DType = d
		var fe *FieldError
		if err := s.Validate(); !errors.As(err, &fe) || fe.Field != "dtype" {
			t.Errorf("%v with 24-element rows: %v", d, err)
		}
	}
	for _, d := range []DType{DTypeFloat32, DTypeFloat16} {
		s.DType = d
		if err := s.Validate(); err != nil {
			t.Errorf("%v: %v", d, err)
		}
	}
	s.HeadDim = 32 // 96-element rows
	s.DType = DTypeQ4_0
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestBytesPerToken pins the table in docs/engine.md ("Stored KV element
// types"): K and V bytes per token position, all layers, for builtin:small
// and llama2.c's 42M and 110M shapes.
func TestBytesPerToken(t *testing.T) {
	shapes := []struct {
		name                     string
		layers, kvHeads, headDim int
		want                     [4]int // float32, float16, q8_0, q4_0
	}{
		{"builtin:small", 8, 4, 64, [4]int{16384, 8192, 4352, 2304}},
		{"42M", 8, 8, 64, [4]int{32768, 16384, 8704, 4608}},
		{"110M", 12, 12, 64, [4]int{73728, 36864, 19584, 10368}},
	}
	for _, sh := range shapes {
		for i, d := range []DType{DTypeFloat32, DTypeFloat16, DTypeQ8_0, DTypeQ4_0} {
			s := Spec{Layers: sh.layers, KVHeads: sh.kvHeads, HeadDim: sh.headDim, TokensPerBlock: 16, DType: d, ModelTag: "m"}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			got := s.BlockBytes() / s.TokensPerBlock
			if testing.Verbose() {
				t.Logf("%s %v: %d bytes per token", sh.name, d, got)
			}
			if got != sh.want[i] {
				t.Errorf("%s %v: %d bytes per token, want %d", sh.name, d, got, sh.want[i])
			}
		}
	}
}
