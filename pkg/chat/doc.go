// Package chat turns a conversation into the prompt text a model was trained
// on, by rendering the model's chat template: the Jinja source Hugging Face
// tokenizers carry as chat_template and GGUF files as
// tokenizer.chat_template.
//
// # Why it matters here
//
// The server keeps each conversation's KV cache warm between turns: a turn's
// prompt is only cheap if the previous turn's prompt plus the reply the model
// produced is a prefix of it. That is a property of the template, not of this
// package, so the tests check it for every family in testdata/ (see the
// warm-chat tests for which families keep it byte for byte and which insert
// or strip text around the reply). Rendering must also be byte-exact: a
// missing newline is a different token sequence, a colder cache and a prompt
// the model was not trained on.
//
// # Library
//
// Templates are compiled and run by github.com/ardanlabs/jinja (v1.8.0), a
// pure-Go Jinja engine written for exactly this job: rendering the chat
// templates embedded in GGUF files. It was chosen because it is pure Go with
// no dependencies (no cgo, no Python), it is maintained and tested against
// the templates of current model families (Llama 3, Qwen 2/3, Mistral,
// Gemma, DeepSeek, GPT-OSS, ...), compiled templates are immutable and safe
// to render concurrently, and it covers what chat templates use: if, for,
// set, macro, call, filter and raw blocks, loop variables, namespace(),
// slicing, string methods (strip, split, startswith, ...), dict methods
// (get, items, ...), and filters such as trim, tojson, join, length,
// selectattr, map and default. It applies Hugging Face's
// trim_blocks/lstrip_blocks by default.
//
// Three things are done here rather than left to the library:
//
//   - Whitespace control (trim_blocks, lstrip_blocks, "-" and "+" markers,
//     keep_trailing_newline=False) is applied by this package before
//     compiling, because the library trims the nearest text segment even
//     when another tag stands between it and the trimming tag (see
//     whitespace.go), which drops newlines Jinja2 keeps.
//   - strftime_now is provided here, with a clock that tests (and callers)
//     can fix, and a strftime that copies literal text through unchanged.
//   - raise_exception is provided here so that a template's own refusal of
//     a conversation can be told apart from a broken template (RaiseError).
//
// Known gaps in the library, none of which the templates in testdata/ hit:
// tojson with indent= sorts keys and HTML-escapes <, > and & (Python keeps
// order and escapes nothing), and tojson without it escapes U+2028/U+2029;
// there is no format filter and no "%" string formatting; and it is lenient
// where Jinja2 raises (an index out of range renders as empty).
//
// # Warm chat by family
//
// For a turn rendered as P1 and answered with R1, the next turn's prompt
// starts with P1 + R1 + the end-of-turn text for ChatML (Qwen 2.5,
// OpenHermes), Zephyr/TinyLlama, Mistral Instruct's original template,
// Llama 3 and Llama 3.2 (the last two trim R1, so it must carry no
// surrounding whitespace; Llama 3.1+ also prints today's date, so the
// prefix changes at midnight unless the clock is pinned, see WithClock),
// and for Plain. It does not hold byte for byte for Llama 2 chat, which
// writes ' ' + R1.strip() + ' ' + eos (it holds when R1 keeps the single
// leading space SentencePiece decoding produces), nor for Mistral's later
// "v1" template, which writes ' ' + R1 + eos. TestWarmChat checks each case.
//
// # Conventions
//
// Render passes what transformers' apply_chat_template passes: messages (a
// list of {"role", "content"} dicts, in that key order), add_generation_prompt,
// bos_token, eos_token, tools and documents (both none), plus the helpers
// raise_exception(msg) and strftime_now(fmt). Templates that reject a system
// message (Mistral's original template, Gemma, ...) or silently drop it get
// it merged into the first user message, as llama.cpp does (see
// Template.SupportsSystemRole). Models without a template use Plain.
package chat
