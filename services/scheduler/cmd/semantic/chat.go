package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/semantic-kv/semantic/pkg/client"
)

// chatCmd is an interactive conversation with one agent. Each turn resends
// the conversation (so a model's chat template applies) and the scheduler
// reuses what it has already computed; after each turn a status line shows
// how much came from the cache and the time to the first token. Ctrl-C
// cancels the turn in progress, not the program; Ctrl-D or /bye ends it.
func chatCmd(ctx context.Context, fs *flag.FlagSet, g *global, args []string, t *terminal) error {
	agent := fs.String("agent", "", "the agent to talk to (required)")
	system := fs.String("system", "", "a system prompt")
	maxTokens := fs.Uint("max-tokens", 256, "most tokens per reply")
	temp := fs.Float64("temperature", 0.7, "sampling temperature (0: greedy)")
	if pos, err := parse(fs, args); err != nil {
		return err
	} else if *agent == "" || len(pos) > 0 {
		return usageError{errors.New("chat needs --agent NAME and no arguments")}
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	conv := c.Conversation(*agent, *system)
	conv.Request.MaxTokens, conv.Request.Temperature = uint32(*maxTokens), float32(*temp)

	// SIGINT cancels the current turn; at the prompt it only reminds how
	// to leave.
	intr := make(chan os.Signal, 1)
	signal.Notify(intr, os.Interrupt)
	defer signal.Stop(intr)

	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(t.in)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		readErr <- sc.Err()
	}()
	if t.tty {
		t.printf("%s\n", t.style(dim, fmt.Sprintf("chatting as agent %q (Ctrl-C cancels a reply, Ctrl-D or /bye leaves)", *agent)))
	}
	for {
		t.printf("%s", t.style(bold, ">>> "))
		var line string
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			t.printf("\n")
			return err
		case <-intr:
			t.printf("\n%s\n", t.style(dim, "(Ctrl-D or /bye to leave)"))
			continue
		case line = <-lines:
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case line == "/bye" || line == "/exit":
			return nil
		}
		if err := turn(ctx, conv, line, intr, t); err != nil {
			if exitCode(err) == exitAuth {
				return err // no point going on
			}
			fmt.Fprintln(t.err, t.style(red, "error: "+err.Error()))
		}
	}
}

// turn streams one reply, printing tokens as they come, then the status
// line.
func turn(ctx context.Context, conv *client.Conversation, line string, intr <-chan os.Signal, t *terminal) error {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	go func() {
		select {
		case <-intr:
			cancel()
		case <-stopWatch:
		}
	}()
	start := time.Now()
	var ttft time.Duration
	n := 0
	ts := conv.Send(tctx, line)
	for tok, err := range ts.Tokens() {
		if err != nil {
			if tctx.Err() != nil && ctx.Err() == nil {
				t.printf("\n%s\n", t.style(dim, "(cancelled)"))
				return nil
			}
			t.printf("\n")
			return err
		}
		if n == 0 {
			ttft = time.Since(start)
		}
		n++
		t.printf("%s", tok.Text)
	}
	t.printf("%s\n", ts.Tail())
	u := ts.Usage()
	elapsed := time.Since(start)
	rate := 0.0
	if d := elapsed - ttft; n > 1 && d > 0 {
		rate = float64(n-1) / d.Seconds()
	}
	status := fmt.Sprintf("[%d/%d prompt tokens cached · first token %s · %d tokens at %.1f tok/s · %s]",
		u.GetCachedTokens(), u.GetPromptTokens(), ttft.Round(time.Millisecond), u.GetCompletionTokens(), rate, u.GetPoolNode())
	style := dim
	if !u.GetTurnSaved() {
		// The next turn will run without this one's cache: say so loudly.
		status, style = "turn not saved ("+u.GetTurnUnsavedReason()+") "+status, red
	}
	t.printf("%s\n", t.style(style, t.fit(status, t.width)))
	return nil
}
