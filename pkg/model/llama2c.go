package model

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/semantic-kv/semantic/pkg/gguf"
)

// ErrBadCheckpoint is wrapped by every error about a malformed checkpoint.
var ErrBadCheckpoint = errors.New("bad llama2.c checkpoint")

// LoadLlama2c maps a llama2.c checkpoint (run.c's format, float32): the
// weights are used where they lie in the mapped file, as run.c does, not
// copied into the heap; Close releases the mapping. The model has no
// tokenizer; Load attaches one when given tokenizer=PATH.
func LoadLlama2c(path string) (*Model, error) {
	f, err := gguf.Map(path)
	if err != nil {
		return nil, fmt.Errorf("llama2c checkpoint %s: %w", path, err)
	}
	m, err := ParseLlama2c(f.Data, modelName(path))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("llama2c checkpoint %s: %w", path, err)
	}
	m.closer = f
	return m, nil
}

// ParseLlama2c decodes checkpoint bytes: a header of 7 int32 (dim,
// hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len; a negative
// vocab_size means an unshared classifier stored last), then the float32
// tensors in run.c's order. Errors name the byte offset where reading failed.
// The tensors are views of data (on a little-endian host; copies otherwise),
// which must outlive the model and not change.
func ParseLlama2c(data []byte, name string) (*Model, error) {
	const headerBytes = 7 * 4
	if len(data) < headerBytes {
		return nil, fmt.Errorf("%w: truncated at byte offset %d: header needs %d bytes", ErrBadCheckpoint, len(data), headerBytes)
	}
	var h [7]int
	for i := range h {
		h[i] = int(int32(binary.LittleEndian.Uint32(data[4*i:])))
	}
	shared := h[5] > 0
	vocab := h[5]
	if vocab < 0 {
		vocab = -vocab
	}
	c := Config{Dim: h[0], HiddenDim: h[1], Layers: h[2], Heads: h[3], KVHeads: h[4], Vocab: vocab, SeqLen: h[6], NormEps: 1e-5, RopeTheta: 10000}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: header (dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d vocab_size=%d seq_len=%d): %w",
			ErrBadCheckpoint, h[0], h[1], h[2], h[3], h[4], h[5], h[6], err)
	}
	m := &Model{Name: name, Config: c, BOS: -1, EOS: -1, Layers: make([]Layer, c.Layers),
		Info: Info{Architecture: "llama", Format: "llama2c"}}
	if c.Vocab > 2 {
		// llama2.c's vocabulary convention: 1 = BOS, 2 = EOS.
		m.BOS, m.EOS = 1, 2
	}
	off := int64(headerBytes)
	size := int64(len(data))
	read := func(n int64, what string) ([]float32, error) {
		bytes := 4 * n
		if size-off < bytes {
			return nil, fmt.Errorf("%w: truncated at byte offset %d reading %s (need %d bytes, file has %d)", ErrBadCheckpoint, off, what, bytes, size)
		}
		t := float32View(data[off : off+bytes])
		for i, v := range t {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("%w: non-finite weight at byte offset %d in %s", ErrBadCheckpoint, off+4*int64(i), what)
			}
		}
		off += bytes
		return t, nil
	}
	dim, hid, kv, L := int64(c.Dim), int64(c.HiddenDim), int64(c.KVDim()), int64(c.Layers)
	// Check the total size before allocating anything, so a header that
	// claims terabytes fails fast with the offset where the data ends.
	hs := int64(c.HeadDim())
	total := headerBytes + 4*(int64(c.Vocab)*dim+L*(2*dim+2*dim*dim+2*kv*dim+3*hid*dim)+dim+int64(c.SeqLen)*hs)
	if !shared {
		total += 4 * int64(c.Vocab) * dim
	}
	if size < total {
		return nil, fmt.Errorf("%w: truncated: file ends at byte offset %d, header implies %d bytes", ErrBadCheckpoint, size, total)
	}
	if size > total {
		return nil, fmt.Errorf("%w: %d unexpected trailing bytes after byte offset %d", ErrBadCheckpoint, size-total, total)
	}
	emb, err := read(int64(c.Vocab)*dim, "token_embedding_table")
	if err != nil {
		return nil, err
	}
	m.Embedding = F32(c.Vocab, c.Dim, emb)
	// Each tensor in file order: a norm vector (mat nil) or a rows x cols matrix.
	for _, s := range []struct {
		what       string
		rows, cols int64
		vec        func(*Layer) *[]float32
		mat        func(*Layer) *Tensor
	}{
		{"rms_att_weight", 1, dim, func(l *Layer) *[]float32 { return &l.AttNorm }, nil},
		{"wq", dim, dim, nil, func(l *Layer) *Tensor { return &l.Wq }},
		{"wk", kv, dim, nil, func(l *Layer) *Tensor { return &l.Wk }},
		{"wv", kv, dim, nil, func(l *Layer) *Tensor { return &l.Wv }},
		{"wo", dim, dim, nil, func(l *Layer) *Tensor { return &l.Wo }},
		{"rms_ffn_weight", 1, dim, func(l *Layer) *[]float32 { return &l.FFNNorm }, nil},
		{"w1", hid, dim, nil, func(l *Layer) *Tensor { return &l.W1 }},
		{"w2", dim, hid, nil, func(l *Layer) *Tensor { return &l.W2 }},
		{"w3", hid, dim, nil, func(l *Layer) *Tensor { return &l.W3 }},
	} {
		for i := range m.Layers {
			t, err := read(s.rows*s.cols, fmt.Sprintf("%s[layer %d]", s.what, i))
			if err != nil {
				return nil, err
			}
			if s.mat == nil {
				*s.vec(&m.Layers[i]) = t
			} else {
				*s.mat(&m.Layers[i]) = F32(int(s.rows), int(s.cols), t)
			}
		}
	}
	if m.FinalNorm, err = read(dim, "rms_final_weight"); err != nil {
		return nil, err
	}
	// freq_cis_real and freq_cis_imag: RoPE tables the engine recomputes.
	off += 4 * int64(c.SeqLen) * hs
	if shared {
		m.Classifier = m.Embedding
	} else {
		cls, err := read(int64(c.Vocab)*dim, "wcls")
		if err != nil {
			return nil, err
		}
		m.Classifier = F32(c.Vocab, c.Dim, cls)
	}
	m.finish()
	return m, nil
}

// WriteLlama2c writes m in llama2.c's checkpoint format (an unshared
// classifier is written last with a negative vocab_size; the RoPE tables are
// written as zeros, since readers recompute them).
func WriteLlama2c(w io.Writer, m *Model) error {
	c := m.Config
	for _, t := range m.tensorList() {
		if t.Type != gguf.TensorF32 {
			return fmt.Errorf("llama2c checkpoints hold float32 weights only; this model has %v", t.Type)
		}
	}
	vocab := c.Vocab
	if !m.SharedClassifier() {
		vocab = -vocab
	}
	hdr := []int32{int32(c.Dim), int32(c.HiddenDim), int32(c.Layers), int32(c.Heads), int32(c.KVHeads), int32(vocab), int32(c.SeqLen)}
	bw := bufio.NewWriter(w)
	if err := binary.Write(bw, binary.LittleEndian, hdr); err != nil {
		return err
	}
	ts := m.tensors()
	n := len(ts)
	if !m.SharedClassifier() {
		n-- // classifier goes after the RoPE tables
	}
	for _, t := range ts[:n] {
		if _, err := bw.Write(t); err != nil {
			return err
		}
	}
	if err := binary.Write(bw, binary.LittleEndian, make([]float32, c.SeqLen*c.HeadDim())); err != nil {
		return err
	}
	if !m.SharedClassifier() {
		if _, err := bw.Write(m.Classifier.Bytes()); err != nil {
			return err
		}
	}
	return bw.Flush()
}
