package chat

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// Roles a Message may have.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleAssistant = "assistant"
)

// Limits. A conversation is client input, so it is bounded before any
// template runs; the rendered prompt is bounded after, because a template
// (model-file input) can repeat a message any number of times.
const (
	// MaxMessages is the most messages Render accepts.
	MaxMessages = 4096
	// MaxRenderBytes bounds both the messages' total content and the
	// rendered prompt.
	MaxRenderBytes = 64 << 20
)

var (
	// ErrBadMessages is wrapped by every error about the conversation
	// itself (empty, too long, unknown role, a misplaced system message,
	// invalid UTF-8): the request is at fault, so callers answer
	// INVALID_ARGUMENT. The error is a *FieldError, which names the field.
	ErrBadMessages = errors.New("chat: bad messages")
	// ErrTemplate is wrapped by errors from compiling or running a
	// template, including a template's own raise_exception(...), whose
	// message is kept (errors.As with *RaiseError tells that case apart).
	ErrTemplate = errors.New("chat template")
)

// Message is one turn of a conversation.
type Message struct {
	Role    string // RoleSystem, RoleUser or RoleAssistant
	Content string
}

// FieldError says which part of a conversation is invalid. It wraps
// ErrBadMessages.
type FieldError struct {
	// Field is the offending field in the request's terms, e.g.
	// "messages" or "messages[3].role".
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	return ErrBadMessages.Error() + ": " + e.Field + ": " + e.Reason
}

// Unwrap makes errors.Is(err, ErrBadMessages) hold.
func (e *FieldError) Unwrap() error { return ErrBadMessages }

// RaiseError is the error a template raises with raise_exception(msg).
// Render wraps it with ErrTemplate. Templates raise to refuse a conversation
// they cannot express ("Conversation roles must alternate
// user/assistant/user/assistant/..."), which is usually the client's doing,
// whereas other template errors mean the template or this package is broken;
// errors.As lets a caller answer the two differently.
type RaiseError struct {
	Message string
}

func (e *RaiseError) Error() string { return e.Message }

// Template renders conversations into prompt text. It is immutable, so one
// Template may be used by any number of goroutines at once.
type Template struct {
	src        string
	tmpl       *jinja.Template // nil for Plain
	bos, eos   string
	now        func() time.Time
	systemRole bool // the template renders a leading system message itself
}

// Probe contents: distinctive, with no surrounding whitespace for trim or
// strip() to change.
const (
	probeSystem = "chat-probe-system-d41d8cd9"
	probeUser   = "chat-probe-user-8f00b204"
)

// New compiles a chat template once, at model load. bos and eos are the
// texts of the model's BOS and EOS tokens (either may be ""), passed to the
// template as bos_token and eos_token.
//
// Besides syntax errors, New fails if the template cannot render the
// simplest conversation, a single user message with the generation prompt:
// such a template would fail every request, and the library only finds
// unknown filters and functions while rendering, where Jinja2 reports them
// at compile time. Errors wrap ErrTemplate.
//
// New also finds out whether the template renders a leading system message
// (see SupportsSystemRole).
func New(src, bos, eos string) (*Template, error) {
	norm, err := normalizeWhitespace(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	tmpl, err := jinja.Compile(norm)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	t := &Template{src: src, tmpl: tmpl, bos: bos, eos: eos, now: time.Now}
	if _, err := t.render([]Message{{RoleUser, probeUser}}, true); err != nil {
		return nil, fmt.Errorf("%w (rendering a single user message)", err)
	}
	out, err := t.render([]Message{{RoleSystem, probeSystem}, {RoleUser, probeUser}}, true)
	t.systemRole = err == nil && strings.Contains(out, probeSystem)
	return t, nil
}

// Plain returns the template for models that carry none (base and
// completion models): the messages' contents concatenated in order, with no
// role markers, separators or generation prompt. A single user message
// therefore renders exactly as the same text sent as a plain prompt would,
// and each turn's rendering plus the reply is a prefix of the next turn's,
// so the warm cache carries over. The conversation is still validated.
func Plain() *Template {
	return &Template{now: time.Now, systemRole: true}
}

// HasSource reports whether t renders a real template (false for Plain).
func (t *Template) HasSource() bool { return t != nil && t.tmpl != nil }

// Source returns the template's Jinja source ("" for Plain).
func (t *Template) Source() string {
	if t == nil {
		return ""
	}
	return t.src
}

// SupportsSystemRole reports whether the template renders a leading system
// message itself. Some templates refuse one with raise_exception (Mistral
// Instruct v0.1/v0.2, Gemma) and some drop it silently; for those, Render
// merges the system message into the first user message as
// system + "\n" + user (as llama.cpp does), or makes it a user message when
// no user message follows it, so clients can send a system prompt to any
// model.
func (t *Template) SupportsSystemRole() bool { return t == nil || t.systemRole }

// WithClock returns a copy of t whose strftime_now reads the time from now
// (nil means time.Now). Templates that print today's date (Llama 3.1+) render
// differently from one day to the next, which also means a conversation's
// warm prefix changes at midnight; tests, and callers who want a fixed date
// per conversation, pin the clock here.
func (t *Template) WithClock(now func() time.Time) *Template {
	c := *t
	if now == nil {
		now = time.Now
	}
	c.now = now
	return &c
}

// Render validates msgs and renders them. With addGenerationPrompt the
// template appends the opening of an assistant turn, so the prompt ends
// where the model's reply begins.
//
// Errors about the conversation wrap ErrBadMessages (as a *FieldError); all
// others wrap ErrTemplate, including a template's raise_exception (as a
// *RaiseError) and a rendering longer than MaxRenderBytes.
func (t *Template) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	if err := validate(msgs); err != nil {
		return "", err
	}
	if !t.HasSource() {
		var b strings.Builder
		for _, m := range msgs {
			b.WriteString(m.Content)
		}
		return b.String(), nil // validate bounded the total size
	}
	if !t.systemRole && msgs[0].Role == RoleSystem {
		msgs = mergeSystem(msgs)
	}
	return t.render(msgs, addGenerationPrompt)
}

// validate checks the conversation against the package's rules.
func validate(msgs []Message) error {
	if len(msgs) == 0 {
		return &FieldError{Field: "messages", Reason: "must not be empty"}
	}
	if len(msgs) > MaxMessages {
		return &FieldError{Field: "messages", Reason: fmt.Sprintf("%d messages; at most %d are allowed", len(msgs), MaxMessages)}
	}
	total := 0
	for i, m := range msgs {
		switch m.Role {
		case RoleSystem:
			if i != 0 {
				return &FieldError{Field: fmt.Sprintf("messages[%d].role", i), Reason: "a system message is allowed only as the first message"}
			}
		case RoleUser, RoleAssistant:
		default:
			return &FieldError{Field: fmt.Sprintf("messages[%d].role", i), Reason: fmt.Sprintf("unknown role %.32q; want system, user or assistant", m.Role)}
		}
		if !utf8.ValidString(m.Content) {
			return &FieldError{Field: fmt.Sprintf("messages[%d].content", i), Reason: "not valid UTF-8"}
		}
		total += len(m.Content)
		if total > MaxRenderBytes {
			return &FieldError{Field: "messages", Reason: fmt.Sprintf("content exceeds %d bytes in total", MaxRenderBytes)}
		}
	}
	return nil
}

// mergeSystem folds a leading system message into the next message for
// templates without a system role. An empty system message is dropped.
func mergeSystem(msgs []Message) []Message {
	sys := msgs[0].Content
	rest := msgs[1:]
	out := make([]Message, 0, len(msgs))
	switch {
	case sys == "":
		return append(out, rest...)
	case len(rest) > 0 && rest[0].Role == RoleUser:
		out = append(out, Message{Role: RoleUser, Content: sys + "\n" + rest[0].Content})
		return append(out, rest[1:]...)
	default:
		out = append(out, Message{Role: RoleUser, Content: sys})
		return append(out, rest...)
	}
}

// raiseException is the template's raise_exception(msg).
var raiseException = jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Undefined(), &RaiseError{Message: "raise_exception called without a message"}
	}
	return jinja.Undefined(), &RaiseError{Message: valueText(args[0])}
})

// valueText is v as the template would print it.
func valueText(v jinja.Value) string {
	switch {
	case v.IsString():
		return v.AsString()
	case v.IsUndefined(), v.IsNone():
		return ""
	default:
		return v.String()
	}
}

// render runs the compiled template over msgs as they are.
func (t *Template) render(msgs []Message, addGenerationPrompt bool) (out string, err error) {
	defer func() {
		// The library type-asserts in places; a template that trips one
		// must fail its request, not the server.
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("%w: rendering panicked: %v", ErrTemplate, r)
		}
	}()
	items := make([]jinja.Value, len(msgs))
	for i, m := range msgs {
		d := jinja.NewDict()
		d.AsDict().Set("role", jinja.NewString(m.Role))
		d.AsDict().Set("content", jinja.NewString(m.Content))
		items[i] = d
	}
	now := t.now
	data := map[string]jinja.Value{
		"messages":              jinja.NewList(items),
		"add_generation_prompt": jinja.NewBool(addGenerationPrompt),
		"bos_token":             jinja.NewString(t.bos),
		"eos_token":             jinja.NewString(t.eos),
		// transformers passes these as None when the request has none.
		"tools":           jinja.None(),
		"documents":       jinja.None(),
		"raise_exception": raiseException,
		"strftime_now": jinja.NewCallable("strftime_now", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
			format := "%Y-%m-%d"
			if len(args) > 0 {
				format = valueText(args[0])
			}
			return jinja.NewString(strftime(format, now())), nil
		}),
	}
	out, err = t.tmpl.RenderValues(data)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	if len(out) > MaxRenderBytes {
		return "", fmt.Errorf("%w: rendered prompt is %d bytes; the limit is %d", ErrTemplate, len(out), MaxRenderBytes)
	}
	return out, nil
}
