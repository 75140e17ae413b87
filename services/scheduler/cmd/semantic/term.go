package main

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// terminal is where the CLI reads and writes: colours and the width only
// when stdout is a terminal (and NO_COLOR is unset), plain text otherwise,
// so that scripts and pipes get stable output.
type terminal struct {
	in       io.Reader
	out, err io.Writer
	tty      bool
	color    bool
	width    int
}

func newTerm(in io.Reader, out, errw io.Writer) *terminal {
	t := &terminal{in: in, out: out, err: errw, width: 80}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		t.tty = true
		t.color = os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 20 {
			t.width = w
		}
	}
	return t
}

const (
	dim   = "\x1b[2m"
	bold  = "\x1b[1m"
	red   = "\x1b[31m"
	green = "\x1b[32m"
	reset = "\x1b[0m"
)

// style wraps s in an ANSI style on a colour terminal.
func (t *terminal) style(code, s string) string {
	if !t.color {
		return s
	}
	return code + s + reset
}

func (t *terminal) printf(format string, args ...any) { fmt.Fprintf(t.out, format, args...) }

// fit cuts s to width on a terminal (for table cells and status lines);
// output for a pipe or a file is never cut.
func (t *terminal) fit(s string, width int) string {
	if !t.tty || width <= 0 || len(s) <= width {
		return s
	}
	if width <= 1 {
		return s[:width]
	}
	return s[:width-1] + "…"
}
