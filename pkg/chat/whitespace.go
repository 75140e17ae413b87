package chat

import (
	"fmt"
	"strings"
	"unicode"
)

// Whitespace control is done here, before the library sees the source.
//
// Hugging Face renders chat templates with Jinja2's trim_blocks and
// lstrip_blocks on, and every template on the Hub (and so every GGUF
// tokenizer.chat_template) is written against that. The library applies those
// rules too, but it applies each trim to the nearest *text* segment even when
// another tag stands in between, so "{% if x %}{{ a }}\nb" loses the "\n"
// that Jinja2 keeps, and "A\n{% if x %}{{- b }}" loses the "\n" before b.
// The prompt bytes are what the model was trained on, so a silently eaten
// newline is a real bug (and a hard one to see).
//
// normalizeWhitespace therefore applies Jinja2's rules itself, exactly as
// Jinja2's lexer does (newline normalisation, keep_trailing_newline=False,
// "-" and "+" markers, trim_blocks, lstrip_blocks, {% raw %}), and emits an
// equivalent source in which every piece of literal text has become a string
// expression ({{ "..." }}) and no tag carries a marker. With no text segments
// left, the library's own trimming has nothing to act on, so the output is
// Jinja2's. Tags are kept verbatim (less their markers) and newlines stay
// where they were (a newline that whitespace control removes is written
// into an empty comment), so line numbers in the library's error messages
// still point into the original source.

type segKind int

const (
	segText segKind = iota
	segExpr
	segStmt
	segComment
)

type segment struct {
	kind segKind
	// text is the literal text (segText), or the inside of a tag without its
	// delimiters and markers.
	text string
	// left and right are the whitespace-control markers just inside the
	// delimiters: '-', '+' or 0.
	left, right byte
	// raw marks the {% raw %} and {% endraw %} tags, which are not written
	// out: the text between them is written as a literal instead.
	raw bool
}

// normalizeWhitespace returns src rewritten as described above.
func normalizeWhitespace(src string) (string, error) {
	// Jinja2 turns every \r\n and \r into \n before lexing, and by default
	// (keep_trailing_newline=False) drops one trailing newline.
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\r", "\n")
	src = strings.TrimSuffix(src, "\n")

	segs, err := scanSegments(src)
	if err != nil {
		return "", err
	}

	var b strings.Builder
	b.Grow(len(src) + len(src)/4)
	for i, s := range segs {
		switch s.kind {
		case segText:
			var prev, next *segment
			if i > 0 {
				prev = &segs[i-1]
			}
			if i+1 < len(segs) {
				next = &segs[i+1]
			}
			text := trimText(s.text, prev, next)
			writeLiteral(&b, text)
			keepLines(&b, strings.Count(s.text, "\n")-strings.Count(text, "\n"))
		case segExpr:
			b.WriteString("{{")
			b.WriteString(s.text)
			b.WriteString("}}")
		case segStmt:
			if s.raw {
				keepLines(&b, strings.Count(s.text, "\n"))
				continue
			}
			b.WriteString("{%")
			b.WriteString(s.text)
			b.WriteString("%}")
		case segComment:
			b.WriteString("{#")
			b.WriteString(s.text)
			b.WriteString("#}")
		}
	}
	return b.String(), nil
}

// isBlock reports whether s is a tag that trim_blocks and lstrip_blocks apply
// to: statements and comments, never expressions.
func (s *segment) isBlock() bool { return s.kind == segStmt || s.kind == segComment }

// trimText applies Jinja2's whitespace control to the text between the tags
// prev and next (nil at the template's ends), the way Jinja2's lexer does:
// the previous tag's end first consumes what it may, then the next tag's
// start strips what it may from what is left.
func trimText(text string, prev, next *segment) string {
	lineStarting := true // the template's start counts as a line start
	if prev != nil {
		lineStarting = false
		switch {
		case prev.right == '-':
			rest := strings.TrimLeftFunc(text, unicode.IsSpace)
			lineStarting = strings.HasSuffix(text[:len(text)-len(rest)], "\n")
			text = rest
		case prev.isBlock() && prev.right != '+' && strings.HasPrefix(text, "\n") &&
			!(prev.raw && strings.TrimSpace(prev.text) == "raw"):
			// trim_blocks: the newline right after a block tag goes
			// (Jinja2 does not apply it after {% raw %}).
			text = text[1:]
			lineStarting = true
		}
	}
	if next != nil {
		switch {
		case next.left == '-':
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		case next.isBlock() && next.left != '+':
			// lstrip_blocks: indentation before a block tag that starts
			// its line goes.
			lpos := strings.LastIndexByte(text, '\n') + 1
			if (lpos > 0 || lineStarting) && lpos < len(text) &&
				strings.TrimLeftFunc(text[lpos:], unicode.IsSpace) == "" {
				text = text[:lpos]
			}
		}
	}
	return text
}

// keepLines writes n newlines inside a comment, so that text removed by
// whitespace control does not shift the line numbers of what follows.
func keepLines(b *strings.Builder, n int) {
	if n > 0 {
		b.WriteString("{#")
		b.WriteString(strings.Repeat("\n", n))
		b.WriteString("#}")
	}
}

// writeLiteral writes text as a string expression. Only the backslash and the
// quote need escaping; newlines stay raw so line numbers are kept.
func writeLiteral(b *strings.Builder, text string) {
	if text == "" {
		return
	}
	b.WriteString(`{{ "`)
	for i := 0; i < len(text); i++ {
		switch c := text[i]; c {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(`" }}`)
}

// scanSegments splits src into text and tags. It finds tag ends the way the
// library's scanner does (the first closer outside a quoted string), so the
// tags it writes back are split identically by the library. A {% raw %}
// block becomes its two tags (dropped on output) around a text segment
// holding the block's content, which is written out verbatim.
func scanSegments(src string) ([]segment, error) {
	var segs []segment
	textStart := 0
	i := 0
	for i+1 < len(src) {
		if src[i] != '{' {
			i++
			continue
		}
		var kind segKind
		var closer string
		switch src[i+1] {
		case '{':
			kind, closer = segExpr, "}}"
		case '%':
			kind, closer = segStmt, "%}"
		case '#':
			kind, closer = segComment, "#}"
		default:
			i++
			continue
		}
		if i > textStart {
			segs = append(segs, segment{kind: segText, text: src[textStart:i]})
		}
		line := 1 + strings.Count(src[:i], "\n")
		seg, end, err := scanTag(src, i+2, kind, closer)
		if err != nil {
			return nil, fmt.Errorf("%w at line %d", err, line)
		}
		i = end
		segs = append(segs, seg)
		if kind == segStmt && strings.TrimSpace(seg.text) == "raw" {
			body, closeTag, after, ok := scanRaw(src, i)
			if !ok {
				return nil, fmt.Errorf("unclosed raw block at line %d", line)
			}
			segs[len(segs)-1].raw = true
			closeTag.raw = true
			segs = append(segs, segment{kind: segText, text: body}, closeTag)
			i = after
		}
		textStart = i
	}
	if textStart < len(src) {
		segs = append(segs, segment{kind: segText, text: src[textStart:]})
	}
	return segs, nil
}

// scanTag reads a tag whose inside starts at i and returns it and the index
// just past its closer.
func scanTag(src string, i int, kind segKind, closer string) (segment, int, error) {
	seg := segment{kind: kind}
	if i < len(src) && (src[i] == '-' || (src[i] == '+' && kind != segExpr)) {
		seg.left = src[i]
		i++
	}
	contentStart := i
	for i < len(src) {
		c := src[i]
		if kind != segComment && (c == '\'' || c == '"') {
			i++
			for i < len(src) && src[i] != c {
				if src[i] == '\\' && i+1 < len(src) {
					i++
				}
				i++
			}
			if i < len(src) {
				i++
			}
			continue
		}
		if (c == '-' || (c == '+' && kind != segExpr)) && strings.HasPrefix(src[i+1:], closer) {
			seg.text = src[contentStart:i]
			seg.right = c
			return seg, i + 1 + len(closer), nil
		}
		if strings.HasPrefix(src[i:], closer) {
			seg.text = src[contentStart:i]
			return seg, i + len(closer), nil
		}
		i++
	}
	name := map[segKind]string{segExpr: "expression", segStmt: "statement", segComment: "comment"}[kind]
	return seg, 0, fmt.Errorf("unclosed %s tag", name)
}

// scanRaw finds the {% endraw %} that closes a raw block whose body starts at
// i, and returns the body, the closing tag, and the index just past it. The
// body is not parsed (quotes in it mean nothing), as in Jinja2.
func scanRaw(src string, i int) (body string, closeTag segment, after int, ok bool) {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }
	for j := i; j+1 < len(src); j++ {
		if src[j] != '{' || src[j+1] != '%' {
			continue
		}
		tag := segment{kind: segStmt}
		k := j + 2
		if k < len(src) && (src[k] == '-' || src[k] == '+') {
			tag.left = src[k]
			k++
		}
		for k < len(src) && isSpace(src[k]) {
			k++
		}
		if !strings.HasPrefix(src[k:], "endraw") {
			continue
		}
		k += len("endraw")
		for k < len(src) && isSpace(src[k]) {
			k++
		}
		if k < len(src) && (src[k] == '-' || src[k] == '+') {
			tag.right = src[k]
			k++
		}
		if !strings.HasPrefix(src[k:], "%}") {
			continue
		}
		tag.text = " endraw "
		return src[i:j], tag, k + 2, true
	}
	return "", segment{}, 0, false
}
