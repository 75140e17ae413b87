package service

import (
	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/model"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// Token ids are uint32 from the request to the engine: the wire's type
// (prompt_token_ids, token_id, the pool's agent records, kvspec.ChainHash)
// is the request's context, the batch loop's sequence and the engine's
// input and sampled token, so the service passes token slices along as
// they are.
//
// The text edge is the one exception, and this file is the one place where
// ids cross it. pkg/tokenizer (Encode, Decode, TokenBytes) and what pkg/model
// builds on it (ChatTokens, EndTokens, BOS and EOS) keep int ids: there an
// id indexes the tokenizer's tables and merge scratch, -1 means "none" (the
// model's BOS and EOS, the decoder's previous token), and changing that API
// would move the conversion into the tokenizer and pkg/model instead of
// removing it. A text is tokenized (or spelled) once per request, so one
// conversion here costs nothing next to the tokenization itself.

// textIDs converts ids between the tokenizer's type and the service's. Ids
// from the tokenizer are in [0, vocab), so none is lost either way; an id
// the tokenizer does not know (a stored id outside the vocabulary) stays
// one it skips.
func textIDs[To, From int | uint32](ids []From) []To {
	out := make([]To, len(ids))
	for i, id := range ids {
		out[i] = To(id)
	}
	return out
}

// encodePrompt tokenizes a text prompt (the model has a tokenizer).
func encodePrompt(m *model.Model, text string, bos bool) []uint32 {
	return textIDs[uint32](m.Tokenizer.Encode(text, bos))
}

// chatTokens renders and tokenizes a conversation (model.ChatTokens).
func chatTokens(m *model.Model, msgs []chat.Message) ([]uint32, error) {
	ids, err := m.ChatTokens(msgs)
	if err != nil {
		return nil, err
	}
	return textIDs[uint32](ids), nil
}

// endTokens lists the ids that end generation (model.EndTokens).
func endTokens(m *model.Model) []uint32 { return textIDs[uint32](m.EndTokens()) }

// decodeText spells ids as text (Tokenizer.Decode).
func decodeText(tk tokenizer.Tokenizer, ids []uint32) string {
	return tk.Decode(textIDs[int](ids))
}

// tokenBytes is one token's text (Tokenizer.TokenBytes). An id past the
// range of int (a 32-bit int) becomes negative, which TokenBytes, like
// any id outside the vocabulary, answers with nil.
func tokenBytes(tk tokenizer.Tokenizer, id uint32) []byte { return tk.TokenBytes(int(id)) }

// inVocab reports whether id is a token of a vocabulary of vocab ids: the
// check a request's and a stored record's ids pass before they reach the
// engine (which checks them again). uint64 holds both sides whatever the
// size of int.
func inVocab(id uint32, vocab int) bool { return uint64(id) < uint64(vocab) }
