package pool

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// TestQuantizedSpecSurvivesRestart: a pool configured with a q8_0 or q4_0
// spec sizes its blocks by the quantized layout (34 or 18 bytes per 32
// elements), refuses a block of the float sizes, persists the spec, and
// serves the same bytes after a restart (block files included).
func TestQuantizedSpecSurvivesRestart(t *testing.T) {
	for _, dt := range []kvspec.DType{kvspec.DTypeQ8_0, kvspec.DTypeQ4_0} {
		t.Run(dt.String(), func(t *testing.T) {
			// 2 layers x 4 positions x 32-element rows: 16 groups per section.
			sp := kvspec.Spec{Layers: 2, KVHeads: 2, HeadDim: 16, TokensPerBlock: 4, DType: dt, ModelTag: "test-model"}
			groupBytes := map[kvspec.DType]int{kvspec.DTypeQ8_0: 34, kvspec.DTypeQ4_0: 18}[dt]
			bb := sp.BlockBytes()
			if bb != 2*2*4*groupBytes {
				t.Fatalf("block bytes %d", bb)
			}
			opt := Options{Dir: t.TempDir(), Capacity: 16, Spec: &sp, Clock: NewFakeClock(time.Unix(1_800_000_000, 0)),
				ExpiryInterval: -1, DefaultTTL: 10 * time.Second, MaxTTL: time.Minute}
			p, err := Open(opt)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { p.Close() }()
			toks := tokens(3, 10) // two full blocks and a partial one
			hashes := kvspec.ChainHashes(toks, sp.TokensPerBlock, sp.ModelTag, "", true)
			g, err := p.Lease(ctx, LeaseRequest{Holder: "t", AgentID: "q", Count: len(hashes), Hashes: hashes, ModelTag: sp.ModelTag})
			if err != nil {
				t.Fatal(err)
			}
			// A float16-sized payload for this spec is refused.
			f16 := sp
			f16.DType = kvspec.DTypeFloat16
			if _, err := p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[0].ID, Hash: hashes[0],
				TokenCount: 4, Size: int64(f16.BlockBytes())}); err == nil {
				t.Fatal("a float16-sized block was accepted by a quantized pool")
			}
			for i, h := range hashes {
				data := payloadFor(h, bb)
				w, err := p.BeginWrite(ctx, g.LeaseID, g.Epoch, g.Holder, WriteHeader{BlockID: g.Blocks[i].ID, Hash: h,
					TokenCount: min(4, len(toks)-4*i), Checksum: kvspec.Checksum(data), Size: int64(bb)})
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Write(data); err != nil {
					t.Fatal(err)
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.CommitAgent(ctx, CommitRequest{LeaseID: g.LeaseID, Epoch: g.Epoch, Holder: g.Holder, AgentID: "q",
				ModelTag: sp.ModelTag, Hashes: hashes, Tokens: toks}); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, true); err != nil {
				t.Fatal(err)
			}
			if c := p.Counts(); c.MemoryBytes != int64(len(hashes)*bb) {
				t.Fatalf("memory accounting: %d bytes for %d blocks of %d", c.MemoryBytes, len(hashes), bb)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			// Restart with no spec given: the stored one comes back.
			opt.Spec = nil
			if p, err = Open(opt); err != nil {
				t.Fatal(err)
			}
			if got := p.Spec(); got == nil || *got != sp {
				t.Fatalf("spec after restart: %v, want %v", got, sp)
			}
			r, err := p.GetAgent("q")
			if err != nil || fmt.Sprint(r.Tokens) != fmt.Sprint(toks) {
				t.Fatal(r, err)
			}
			g, err = p.Lease(ctx, LeaseRequest{AgentID: "q", Count: len(r.Hashes), Hashes: r.Hashes, ModelTag: sp.ModelTag})
			if err != nil || g.Hits != len(hashes) {
				t.Fatal(g, err)
			}
			for j, b := range g.Blocks {
				d, err := p.ReadBlock(ctx, g.LeaseID, g.Epoch, g.Holder, b.ID)
				if err != nil || !bytes.Equal(d.Payload, payloadFor(hashes[j], bb)) {
					t.Fatal(j, err)
				}
			}
			p.Release(ctx, g.LeaseID, g.Epoch, g.Holder, false)
			if err := p.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
