package service

import "bytes"

// realign finds how much of an agent's stored context a request tokenized
// afresh from text can reuse.
//
// The stored context holds the ids the model actually saw and produced. A
// chat client resends the model's reply as text, and tokenizing that text
// need not give the same ids: a sampled reply may split a word in a way the
// tokenizer never would (" e" "x" where it writes " ex"), and a merge may
// cross the boundary between a prompt and its reply. A plain longest common
// prefix of the ids then stops at the first such place, although the text is
// the same.
//
// realign walks stored and ids side by side while they spell the same bytes
// and returns the last point where both are at a token boundary: stored[:k]
// and ids[:j] are the same text, so stored[:k] + ids[j:] is the request's
// text with the agent's own ids for the part it has already computed.
// Tokens without text (BOS, EOS, control tokens, ids outside the vocabulary)
// are only passed when both sides have the same id at the same place: no text
// stands in for one, so the splice never adds or drops a special token, and
// never puts a special token where the request's content had text.
func realign(stored, ids []uint32, text func(uint32) []byte) (k, j int) {
	i, jj := 0, 0
	// Bytes of the last token taken on one side that the other side has not
	// matched yet; at most one of the two is non-empty after each step.
	var ps, pi []byte
	for {
		if len(ps) == 0 && len(pi) == 0 {
			k, j = i, jj // both at a token boundary, same text so far
			if i == len(stored) || jj == len(ids) {
				return k, j
			}
			if stored[i] == ids[jj] {
				i, jj = i+1, jj+1
				continue
			}
			ps, pi = text(stored[i]), text(ids[jj])
			if len(ps) == 0 || len(pi) == 0 {
				return k, j
			}
			i, jj = i+1, jj+1
		} else if len(ps) > 0 {
			if jj == len(ids) {
				return k, j
			}
			if pi = text(ids[jj]); len(pi) == 0 {
				return k, j
			}
			jj++
		} else {
			if i == len(stored) {
				return k, j
			}
			if ps = text(stored[i]); len(ps) == 0 {
				return k, j
			}
			i++
		}
		n := min(len(ps), len(pi))
		if !bytes.Equal(ps[:n], pi[:n]) {
			return k, j
		}
		ps, pi = ps[n:], pi[n:]
	}
}
