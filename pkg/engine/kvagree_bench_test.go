package engine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/model"
)

// BenchmarkKVDTypeAgreement measures what storing KV as float16, q8_0 or
// q4_0 does to greedy decoding: an engine that rounds K and V through the
// type as it writes them (Options.KVDType, what the scheduler runs with
// --kv-dtype) greedily generates up to 512 tokens from each prompt, and the
// ids are compared with a float32 engine's. It reports the fraction of
// generated ids equal to float32's at the same position (same-frac; after a
// first difference the two continue from different text, so this counts
// what still coincides), the mean position of the first difference
// (first-diff, = tokens generated when there is none) and the fraction of
// prompts whose whole continuation is identical (identical-frac). Models:
// builtin:small (random weights, byte vocabulary; $SEMANTIC_BENCH_MODEL
// replaces it) and shared/models/stories260K.gguf (trained; its context is
// 512, so it generates 512 minus the prompt). Run with -benchtime=1x:
//
//	go test ./engine -run X -bench KVDTypeAgreement -benchtime=1x
func BenchmarkKVDTypeAgreement(b *testing.B) {
	const maxGen = 512
	type bench struct {
		name    string
		load    func(b *testing.B) *model.Model
		prompts []string
	}
	r := &model.SplitMix64{State: 77}
	var random []string
	for range 4 {
		text := make([]byte, 32+intn(r, 96))
		for j := range text {
			text[j] = byte(' ' + intn(r, 95))
		}
		random = append(random, string(text))
	}
	stories := []string{"Once upon a time", "Lily and Ben went to the park", "The little dog was sad because", "One day, a big bird"}
	for _, bm := range []bench{
		{"small", loadSmall, random},
		{"stories260K", func(b *testing.B) *model.Model {
			m, err := model.Load("gguf:"+modelsFile(b, "stories260K.gguf"), "")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { m.Close() })
			return m
		}, stories},
	} {
		b.Run(bm.name, func(b *testing.B) {
			m := bm.load(b)
			run := func(dt kvspec.DType) [][]uint32 {
				e, err := New(m, Options{TokensPerBlock: 16, KVDType: dt})
				if err != nil {
					b.Fatal(err)
				}
				var out [][]uint32
				for _, p := range bm.prompts {
					prompt := tokenIDs(m.Tokenizer.Encode(p, true))
					gen := min(maxGen, m.Config.SeqLen-len(prompt))
					toks, _ := greedy(b, e, newSeq(e, len(prompt)+gen), prompt, gen)
					out = append(out, toks)
				}
				return out
			}
			ref := run(kvspec.DTypeFloat32)
			for _, dt := range storedTypes {
				b.Run(dt.String(), func(b *testing.B) {
					for i := 0; i < b.N; i++ {
						got := run(dt)
						same, total, whole, first := 0, 0, 0, 0
						var firsts []int
						for p := range got {
							f := len(got[p])
							for j := range got[p] {
								if got[p][j] == ref[p][j] {
									same++
								} else if f == len(got[p]) {
									f = j
								}
								total++
							}
							if slices.Equal(got[p], ref[p]) {
								whole++
							}
							first += f
							firsts = append(firsts, f)
						}
						b.ReportMetric(float64(same)/float64(total), "same-frac")
						b.ReportMetric(float64(first)/float64(len(got)), "first-diff")
						b.ReportMetric(float64(whole)/float64(len(got)), "identical-frac")
						b.ReportMetric(float64(total)/float64(len(got)), "tokens/prompt")
						if testing.Verbose() {
							fmt.Printf("%s %v: first differences per prompt %v\n", bm.name, dt, firsts)
						}
					}
				})
			}
		})
	}
}
