"""Writes pretokenize.json: texts and the pieces the pre-tokenizers' regular
expressions cut them into, with the Python `regex` module (Unicode \\s, \\p{L},
\\p{N}; look-ahead), as an independent reference for the hand-written
scanners of pretokenize.go. Run from this directory: python3 pretokenize_gen.py

Each pre-tokenizer is a list of expressions applied in sequence, every one
splitting the pieces of the one before into its matches and the text between
them (llama.cpp's unicode_regex_split)."""
import json
import random

import regex

GPT2 = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRE = {
    "llama-bpe": [r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
    "qwen2": [r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""],
    "gpt2": [GPT2],
    "smollm": [r"\p{N}", GPT2],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
}


def split(text, exprs):
    parts = [text]
    for expr in exprs:
        rx = regex.compile(expr)
        out = []
        for part in parts:
            off = 0
            for m in rx.finditer(part):
                if m.start() > off:
                    out.append(part[off:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                off = m.end()
            if off < len(part):
                out.append(part[off:])
        parts = out
    return parts


# Characters whose classes are the same in every Unicode version since 14
# (the `regex` module's tables and Go's may be of different versions). No
# U+017F or U+212A: (?i:) folds them to s and k here, while llama.cpp and
# pretokenize.go fold ASCII only.
ATOMS = ["hello", "World", "the", "don", "'s", "'S", "'t", "'T", "'re", "'RE", "'Ve", "'m", "'LL", "'ll", "'d", "'D", "'x", "'",
         " ", " ", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\v", "\f", "\x85", "\xa0", "\u3000", "\u2028", "\u2029",
         "\u1680", "\u2003", "\u202f", "0", "1", "12", "123", "1234", "12345", "\u0663", "\u00bd", "\u216b", "\u00b2", "3.14",
         ".", ",", "!", "?", "...", "-", "\u2014", "(", ")", "\"", "#", "$", "%", "+", "<", ">", "=", "^", "~", "|", "`", "_", "@",
         "&", "*", "/", "\\", "{", "}", "[", "]", "\u00e9", "\u00fc", "\u00f1", "\u00df", "\u03a9", "\u041f\u0440\u0438\u0432\u0435\u0442",
         "\u65e5\u672c\u8a9e", "\u3002", "\u3001", "\U0001f600", "\U0001f44d\U0001f3fd", "\u0301", "a\u0301", "\u200b", "\u200d",
         "\x00", "\x1b", "\x7f", "\u01c5", "\u02b0", "\ufb01", "x", "Q", "AbC", "\u00fcber"]

FIXED = ["", " ", "a", "'s", "  \n", "x \n\n y", "a\xa0\xa0b", "a\u3000\u3000b", "x\v\vy", "hi  ", "hi\t\t", "1234567",
         " 1234", "don't I'M you'RE", "a  b", "a \n b", "a\t\nb", "!!!\n\n", " ?!\r\n\r\nx", "\n \n", "  \t x", "$100 + 20%",
         "x'sy", " 's", "''s", "12 345 6789", "\u0663\u0664\u0665\u0666", "foo\u00a0bar", "end.   "]


def main():
    rng = random.Random(20251127)
    texts = FIXED + ["".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 12))) for _ in range(400)]
    cases = [{"text": t, "pieces": {name: split(t, exprs) for name, exprs in PRE.items()}} for t in texts]
    with open("pretokenize.json", "w", encoding="utf-8") as f:
        f.write('{"generator": %s,\n"cases": [\n' % json.dumps("pretokenize_gen.py, Python regex " + regex.__version__))
        f.write(",\n".join(json.dumps(c, ensure_ascii=True) for c in cases))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
