package service

import (
	"bytes"
	"testing"
)

// A toy vocabulary: 0 is BOS and 1 EOS (no text), 2 is a control token (no
// text); the rest are pieces.
var toyPieces = []string{"", "", "", " e", "x", " ex", "it", " exit", "a", "b", "ab", " "}

func toyText(id uint32) []byte {
	if int(id) >= len(toyPieces) {
		return nil
	}
	return []byte(toyPieces[id])
}

func spell(ids []uint32) string {
	var b bytes.Buffer
	for _, id := range ids {
		b.Write(toyText(id))
	}
	return b.String()
}

func TestRealign(t *testing.T) {
	for _, c := range []struct {
		name   string
		stored []uint32
		ids    []uint32
		k, j   int
	}{
		{"identical", []uint32{0, 3, 4}, []uint32{0, 3, 4, 8}, 3, 3},
		// The model sampled " e" "x" "it"; the text tokenizes as " exit".
		{"resplit", []uint32{0, 3, 4, 6}, []uint32{0, 7, 9}, 4, 2},
		{"resplit partway", []uint32{0, 3, 4, 6, 8}, []uint32{0, 5, 6, 9}, 4, 3},
		// The stored reply runs on past where the text's tokens stop
		// agreeing at a boundary: " exit" vs " ex" + "ab".
		{"no common boundary after", []uint32{0, 7}, []uint32{0, 5, 10}, 1, 1},
		{"text differs", []uint32{0, 3, 4}, []uint32{0, 3, 8}, 2, 2},
		// Special tokens must match by id: a control token (2) is never
		// replaced by text, nor text by it.
		{"control kept", []uint32{0, 2, 7}, []uint32{0, 2, 5, 6}, 3, 4},
		{"control against text", []uint32{0, 2, 7}, []uint32{0, 5, 6}, 1, 1},
		{"text against control", []uint32{0, 7}, []uint32{0, 2, 7}, 1, 1},
		{"ids outside the vocabulary", []uint32{0, 99}, []uint32{0, 7}, 1, 1},
		{"empty stored", nil, []uint32{0, 7}, 0, 0},
		{"stored longer", []uint32{0, 7, 8, 9}, []uint32{0, 3, 4, 6}, 2, 4},
		{"pieces and bytes", []uint32{0, 8, 9, 10}, []uint32{0, 10, 8, 9}, 4, 4},
	} {
		k, j := realign(c.stored, c.ids, toyText)
		if k != c.k || j != c.j {
			t.Errorf("%s: realign = %d, %d; want %d, %d", c.name, k, j, c.k, c.j)
			continue
		}
		if st := c.stored[:k]; spell(st) != spell(c.ids[:j]) {
			t.Errorf("%s: %q vs %q", c.name, spell(st), spell(c.ids[:j]))
		}
	}
}

// FuzzRealign: whatever the two sequences, the returned prefixes spell the
// same text and hold the same special tokens in the same places.
func FuzzRealign(f *testing.F) {
	f.Add([]byte{0, 3, 4, 6, 8}, []byte{0, 5, 6, 9})
	f.Add([]byte{0, 2, 7}, []byte{0, 2, 5, 6})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		stored := make([]uint32, len(a))
		for i, v := range a {
			stored[i] = uint32(v % 14) // 12, 13: outside the vocabulary
		}
		ids := make([]uint32, len(b))
		for i, v := range b {
			ids[i] = uint32(v % 14)
		}
		k, j := realign(stored, ids, toyText)
		if k < 0 || k > len(stored) || j < 0 || j > len(ids) {
			t.Fatalf("out of range: %d, %d", k, j)
		}
		// Split both prefixes at their textless tokens: the same ids there,
		// the same text between.
		split := func(seq []uint32) (specials []uint32, texts []string) {
			var cur []uint32
			for _, id := range seq {
				if len(toyText(id)) == 0 {
					specials = append(specials, id)
					texts = append(texts, spell(cur))
					cur = nil
					continue
				}
				cur = append(cur, id)
			}
			return specials, append(texts, spell(cur))
		}
		s1, t1 := split(stored[:k])
		s2, t2 := split(ids[:j])
		if len(s1) != len(s2) || len(t1) != len(t2) {
			t.Fatalf("structure differs: %v %v / %v %v", s1, t1, s2, t2)
		}
		for i := range s1 {
			if s1[i] != s2[i] {
				t.Fatalf("special %d: %d vs %d", i, s1[i], s2[i])
			}
		}
		for i := range t1 {
			if t1[i] != t2[i] {
				t.Fatalf("text %d: %q vs %q", i, t1[i], t2[i])
			}
		}
	})
}

func TestMatchedStop(t *testing.T) {
	for _, c := range []struct {
		stops []string
		gen   string
		want  string
	}{
		{[]string{"\n"}, "hello\n", "\n"},
		{[]string{"lo", "hel"}, "hello", "hel"},
		{[]string{"ab", "abc"}, "xxabc", "ab"},
		{[]string{"abc", "ab"}, "xxabc", "abc"},
		{[]string{"abc", "b"}, "xab", "b"},
		{[]string{"zz"}, "hello", ""},
	} {
		if got := MatchedStop(c.stops, []byte(c.gen)); got != c.want {
			t.Errorf("MatchedStop(%q, %q) = %q, want %q", c.stops, c.gen, got, c.want)
		}
	}
}
