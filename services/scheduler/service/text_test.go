package service

import (
	"strings"
	"testing"
)

func TestTextStreamHoldsBackStopAndSplitRunes(t *testing.T) {
	cases := []struct {
		name   string
		stops  []string
		tokens []string
		want   string // everything sent, concatenated
		stop   bool
	}{
		{"no stops", nil, []string{"he", "llo"}, "hello", false},
		{"stop inside one token", []string{"END"}, []string{"abcENDxyz"}, "abc", true},
		{"stop across tokens", []string{"\n\n"}, []string{"line", "\n", "\nmore"}, "line", true},
		{"partial stop then no stop", []string{"STOP"}, []string{"ST", "OP?", ""}, "", true},
		{"near miss released at end", []string{"STOP"}, []string{"STO", "x"}, "STOx", false},
		{"earliest of two stops", []string{"bb", "a"}, []string{"xxbba"}, "xx", true},
		{"utf8 split across tokens", nil, []string{"caf\xc3", "\xa9!"}, "café!", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTextStream(tc.stops)
			var got strings.Builder
			for _, tok := range tc.tokens {
				out := ts.push([]byte(tok))
				if !strings.HasPrefix(tc.want, got.String()+out) && !tc.stop {
					t.Fatalf("sent %q, which is not a prefix of %q", got.String()+out, tc.want)
				}
				got.WriteString(out)
			}
			stopped := ts.done
			got.WriteString(ts.flush())
			if got.String() != tc.want || stopped != tc.stop {
				t.Fatalf("got %q (stopped %v), want %q (stopped %v)", got.String(), stopped, tc.want, tc.stop)
			}
		})
	}
}

func TestTextStreamNeverSplitsARune(t *testing.T) {
	ts := newTextStream(nil)
	for _, b := range []byte("日本語") {
		out := ts.push([]byte{b})
		if strings.ContainsRune(out, '\uFFFD') {
			t.Fatalf("sent a broken rune: %q", out)
		}
	}
}

func TestStopMatcher(t *testing.T) {
	m := newStopMatcher([]string{"</s>"})
	for i, tok := range []string{"<", "/", "s", ">"} {
		got := m.push([]byte(tok))
		if (i < 3 && got != -1) || (i == 3 && got != 0) {
			t.Fatalf("push %d: %d", i, got)
		}
	}
}
