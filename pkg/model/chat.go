package model

import (
	"errors"
	"fmt"
	"strings"

	"github.com/semantic-kv/semantic/pkg/chat"
	"github.com/semantic-kv/semantic/pkg/tokenizer"
)

// Content markers: private-use code points wrapped around every message's
// content while the template renders, so the rendered text says which bytes
// came from the caller. They are removed before tokenizing.
const (
	contentOpen  = '\uE000'
	contentClose = '\uE001'
)

// ErrBadConversation is wrapped by ChatTokens' errors about the request (a
// bad role, a conversation the template refuses): callers map it to
// INVALID_ARGUMENT. Other errors are the model's (no tokenizer, a template
// that cannot render): FAILED_PRECONDITION.
var ErrBadConversation = errors.New("bad conversation")

// ErrTooLong is wrapped (with ErrBadConversation) when the rendered
// conversation cannot fit the model's context: callers that distinguish
// "too long" (HTTP 413) from other bad requests test for it.
var ErrTooLong = errors.New("conversation too long for the context")

// ErrNoChat is wrapped when the model cannot render conversations.
var ErrNoChat = errors.New("model cannot render conversations")

// ChatTokens renders a conversation with the model's chat template (with the
// prompt for the assistant's next turn) and tokenizes it.
//
// Special tokens are recognised only in the template's own markup: text that
// came from a message's content is tokenized as plain text even when it
// spells "</s>" or "<|im_end|>", so a user cannot forge a turn boundary or a
// system prompt. BOS is prepended unless the template already wrote it.
func (m *Model) ChatTokens(msgs []chat.Message) ([]int, error) {
	if m.Tokenizer == nil || m.Template == nil {
		return nil, fmt.Errorf("%w: model %s has no tokenizer: send token ids", ErrNoChat, m.Name)
	}
	if m.TemplateErr != nil {
		return nil, fmt.Errorf("%w: its chat template does not compile (%v): send a prompt", ErrNoChat, m.TemplateErr)
	}
	wrapped := make([]chat.Message, len(msgs))
	for i, msg := range msgs {
		if strings.ContainsRune(msg.Content, contentOpen) || strings.ContainsRune(msg.Content, contentClose) {
			return nil, fmt.Errorf("%w: messages[%d].content holds U+E000 or U+E001, which are reserved", ErrBadConversation, i)
		}
		wrapped[i] = chat.Message{Role: msg.Role, Content: string(contentOpen) + msg.Content + string(contentClose)}
	}
	text, err := m.Template.Render(wrapped, true)
	var raised *chat.RaiseError
	switch {
	case errors.Is(err, chat.ErrBadMessages) || errors.As(err, &raised):
		// A bad role, or the template's own refusal ("roles must alternate").
		return nil, fmt.Errorf("%w: %w", ErrBadConversation, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrNoChat, err)
	}
	plain, spans := stripMarkers(text)
	if limit := m.MaxTextBytes(); len(plain) > limit {
		return nil, fmt.Errorf("%w: %w: the rendered conversation is %d bytes, more than the model's context of %d tokens can hold (at most %d bytes)",
			ErrBadConversation, ErrTooLong, len(plain), m.Config.SeqLen, limit)
	}
	ids := m.Tokenizer.EncodeChat(plain, spans)
	if m.BOS >= 0 && (len(ids) == 0 || ids[0] != m.BOS) {
		ids = append([]int{m.BOS}, ids...)
	}
	return ids, nil
}

// stripMarkers removes the content markers from text and returns the byte
// ranges of the result that lie inside a marked content (nesting counted, a
// stray close ignored). Other bytes are copied as they are.
func stripMarkers(text string) (string, []tokenizer.Span) {
	const open, close = string(contentOpen), string(contentClose) // 3 bytes each
	var sb strings.Builder
	sb.Grow(len(text))
	var spans []tokenizer.Span
	depth, start := 0, 0
	for len(text) > 0 {
		i := strings.IndexByte(text, open[0])
		if i < 0 {
			sb.WriteString(text)
			break
		}
		sb.WriteString(text[:i])
		text = text[i:]
		switch {
		case strings.HasPrefix(text, open):
			if depth == 0 {
				start = sb.Len()
			}
			depth++
			text = text[len(open):]
		case strings.HasPrefix(text, close):
			if depth > 0 {
				depth--
				if depth == 0 && sb.Len() > start {
					spans = append(spans, tokenizer.Span{Start: start, End: sb.Len()})
				}
			}
			text = text[len(close):]
		default:
			sb.WriteByte(text[0])
			text = text[1:]
		}
	}
	if depth > 0 && sb.Len() > start {
		spans = append(spans, tokenizer.Span{Start: start, End: sb.Len()})
	}
	return sb.String(), spans
}

// MaxTextBytes is the longest text whose tokens can fit the context: a text
// of n bytes gives at least n/MaxTokenBytes tokens, so anything longer is
// refused before it is tokenized (tokenizing 16 MiB only to find it too
// long costs seconds and hundreds of MB). 0 without a tokenizer.
func (m *Model) MaxTextBytes() int {
	if m.Tokenizer == nil {
		return 0
	}
	return m.Config.SeqLen * m.Tokenizer.MaxTokenBytes()
}
