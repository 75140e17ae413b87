package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
	"github.com/semantic-kv/semantic/pkg/client"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
)

const usageText = `semantic: the command-line client of a semantic scheduler.

Usage:
  semantic chat --agent NAME [--system TEXT] [--max-tokens N] [--temperature T]
  semantic generate --agent NAME [--append] [--max-tokens N] [--json] [TEXT | -]   (TEXT or stdin)
  semantic agents ls [--tenant T] [--json]
  semantic agents show NAME [--tenant T] [--json]
  semantic agents rm NAME [--tenant T]
  semantic stats [--interval 1s] [--once]
  semantic pool info --addr HOST:PORT [--tls-ca F --tls-cert F --tls-key F]        (a pool node, not the scheduler)

Global flags (before or after the command; environment in brackets):
  --addr HOST:PORT   the scheduler (SEMANTIC_ADDR, default localhost:50051)
  --api-key KEY      API key (SEMANTIC_API_KEY)
  --tls              connect with TLS (system roots) (SEMANTIC_TLS=1)
  --tls-ca FILE      connect with TLS, verifying against FILE (SEMANTIC_TLS_CA)

Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 unauthenticated or permission denied,
5 unavailable or busy (worth retrying).
Run "semantic COMMAND --help" for a command's flags.
`

// Exit codes.
const (
	exitOK = iota
	exitFail
	exitUsage
	exitNotFound
	exitAuth
	exitRetry
)

// exitCode maps an error to the exit code scripts test.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(usageError)):
		return exitUsage
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	case errors.Is(err, client.ErrUnauthenticated), errors.Is(err, client.ErrPermissionDenied):
		return exitAuth
	case errors.Is(err, client.ErrUnavailable), errors.Is(err, client.ErrQueueFull), errors.Is(err, client.ErrAgentBusy):
		return exitRetry
	}
	return exitFail
}

type usageError struct{ error }

// global holds the flags every command takes.
type global struct {
	addr, apiKey, tlsCA string
	tls                 bool
}

func (g *global) register(fs *flag.FlagSet) {
	fs.StringVar(&g.addr, "addr", envOr("SEMANTIC_ADDR", "localhost:50051"), "scheduler address")
	fs.StringVar(&g.apiKey, "api-key", os.Getenv("SEMANTIC_API_KEY"), "API key")
	fs.BoolVar(&g.tls, "tls", os.Getenv("SEMANTIC_TLS") == "1", "connect with TLS")
	fs.StringVar(&g.tlsCA, "tls-ca", os.Getenv("SEMANTIC_TLS_CA"), "CA certificate to verify the scheduler with (implies --tls)")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (g *global) dial() (*client.Client, error) {
	var opts []client.Option
	if g.apiKey != "" {
		opts = append(opts, client.WithAPIKey(g.apiKey))
	}
	if g.tls || g.tlsCA != "" {
		cfg, err := mtls.ClientConfig(g.tlsCA, "", "", "")
		if err != nil {
			return nil, err
		}
		opts = append(opts, client.WithTLS(cfg))
	}
	return client.Dial(g.addr, opts...)
}

// parse parses a command's flags, allowing them before and after positional
// arguments (semantic agents show alice --json).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func run(ctx context.Context, args []string, t *terminal) int {
	err := dispatch(ctx, args, t)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(t.err, t.style(red, "semantic: "+err.Error()))
	}
	return exitCode(err)
}

func dispatch(ctx context.Context, args []string, t *terminal) error {
	if len(args) == 0 {
		fmt.Fprint(t.err, usageText)
		return usageError{errors.New("no command")}
	}
	var g global
	fs := flag.NewFlagSet("semantic "+args[0], flag.ContinueOnError)
	fs.SetOutput(t.err)
	g.register(fs)
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(t.out, usageText)
		return nil
	case "chat":
		return chatCmd(ctx, fs, &g, args[1:], t)
	case "generate":
		return generateCmd(ctx, fs, &g, args[1:], t)
	case "agents":
		return agentsCmd(ctx, fs, &g, args[1:], t)
	case "stats":
		return statsCmd(ctx, fs, &g, args[1:], t)
	case "pool":
		return poolCmd(ctx, fs, &g, args[1:], t)
	}
	fmt.Fprint(t.err, usageText)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}

func generateCmd(ctx context.Context, fs *flag.FlagSet, g *global, args []string, t *terminal) error {
	agent := fs.String("agent", "", "the agent (required)")
	appendCtx := fs.Bool("append", false, "continue the agent's stored context with TEXT")
	maxTokens := fs.Uint("max-tokens", 128, "most tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature (0: greedy)")
	asJSON := fs.Bool("json", false, "print one JSON object: text, token ids, finish reason, usage")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *agent == "" || len(pos) > 1 {
		return usageError{errors.New("generate needs --agent and at most one TEXT argument (or - / nothing for stdin)")}
	}
	var prompt string
	if len(pos) == 1 && pos[0] != "-" {
		prompt = pos[0]
	} else {
		b, err := io.ReadAll(io.LimitReader(t.in, 64<<20))
		if err != nil {
			return err
		}
		prompt = string(b)
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	req := &client.GenerateRequest{AgentId: *agent, Prompt: prompt, Append: *appendCtx, MaxTokens: uint32(*maxTokens), Temperature: float32(*temp)}
	s := c.Generate(ctx, req)
	var ids []uint32
	for tok, err := range s.Tokens() {
		if err != nil {
			return err
		}
		ids = append(ids, tok.ID)
		if !*asJSON {
			t.printf("%s", tok.Text)
		}
	}
	if *asJSON {
		u, _ := protojson.Marshal(s.Usage())
		out := map[string]any{"text": s.Text(), "token_ids": ids, "finish_reason": s.FinishReason().String(), "usage": json.RawMessage(u)}
		enc := json.NewEncoder(t.out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	t.printf("%s\n", s.Tail())
	if !s.Usage().GetTurnSaved() {
		fmt.Fprintf(t.err, "warning: the turn was not saved (%s): %s\n", s.Usage().GetTurnUnsavedReason(), s.Usage().GetTurnUnsavedDetail())
	}
	return nil
}

func agentsCmd(ctx context.Context, fs *flag.FlagSet, g *global, args []string, t *terminal) error {
	if len(args) == 0 {
		return usageError{errors.New("agents needs ls, show or rm")}
	}
	sub := args[0]
	tenant := fs.String("tenant", "", "another tenant (admin keys; \"*\" lists every tenant with ls)")
	asJSON := fs.Bool("json", false, "JSON output")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	var opts []client.AgentOption
	if *tenant != "" {
		opts = append(opts, client.InTenant(*tenant))
	}
	switch sub {
	case "ls":
		if len(pos) != 0 {
			return usageError{errors.New("agents ls takes no arguments")}
		}
		if !*asJSON {
			t.printf("%s\n", t.style(bold, fmt.Sprintf("%-32s %-12s %8s %7s %8s  %s", "AGENT", "TENANT", "TOKENS", "BLOCKS", "VERSION", "LAST USED")))
		}
		for a, err := range c.Agents(ctx, opts...) {
			if err != nil {
				return err
			}
			if *asJSON {
				b, _ := protojson.Marshal(a)
				t.printf("%s\n", b)
				continue
			}
			t.printf("%-32s %-12s %8d %7d %8d  %s\n", t.fit(a.GetAgentId(), 32), t.fit(a.GetTenant(), 12), a.GetTokenCount(), a.GetBlockCount(),
				a.GetVersion(), a.GetLastUsedTime().AsTime().Local().Format(time.DateTime))
		}
		return nil
	case "show":
		if len(pos) != 1 {
			return usageError{errors.New("agents show takes one agent id")}
		}
		a, err := c.Agent(ctx, pos[0], opts...)
		if err != nil {
			return err
		}
		if *asJSON {
			b, _ := protojson.MarshalOptions{Multiline: true}.Marshal(a)
			t.printf("%s\n", b)
			return nil
		}
		t.printf("%s %s\n", t.style(bold, "agent"), a.GetAgentId())
		t.printf("tenant %q, %d tokens in %d blocks, version %d, on %s, model %s, last used %s\n", a.GetTenant(), a.GetTokenCount(),
			a.GetBlockCount(), a.GetVersion(), a.GetPoolNode(), a.GetModelTag(), a.GetLastUsedTime().AsTime().Local().Format(time.DateTime))
		if a.GetText() != "" {
			t.printf("%s\n%s\n", t.style(dim, "context:"), a.GetText())
		}
		return nil
	case "rm":
		if len(pos) != 1 {
			return usageError{errors.New("agents rm takes one agent id")}
		}
		deleted, err := c.DeleteAgent(ctx, pos[0], opts...)
		if err != nil {
			return err
		}
		if !deleted {
			return &client.Error{Kind: client.ErrNotFound, Message: fmt.Sprintf("agent %q has no cached context", pos[0])}
		}
		t.printf("deleted %s\n", pos[0])
		return nil
	}
	return usageError{fmt.Errorf("unknown agents command %q (ls, show, rm)", sub)}
}

func statsCmd(ctx context.Context, fs *flag.FlagSet, g *global, args []string, t *terminal) error {
	interval := fs.Duration("interval", time.Second, "refresh interval")
	once := fs.Bool("once", !t.tty, "print once and exit (the default when stdout is not a terminal)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := g.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		st, err := c.Stats(ctx)
		if err != nil {
			return err
		}
		if t.tty && !*once {
			t.printf("\x1b[H\x1b[2J") // redraw in place
		}
		t.printf("%s  %s\n", t.style(bold, "semantic"), t.fit(st.GetModel(), t.width-10))
		t.printf("requests   running %-4d waiting %-4d completed %-8d failed %d\n", st.GetRunning(), st.GetWaiting(), st.GetRequestsCompleted(), st.GetRequestsFailed())
		t.printf("batch      %d of %d   decode %.1f tok/s\n", st.GetBatchSize(), st.GetMaxBatchSize(), st.GetDecodeTokensPerSecond())
		t.printf("cache      hit rate %.1f%%   cached %d / prefilled %d tokens   hot cache %s   blocks leased %d\n",
			100*st.GetPrefixHitRate(), st.GetCachedTokens(), st.GetPrefillTokens(), bytesStr(st.GetHotCacheBytes()), st.GetBlocksLeased())
		for _, n := range st.GetPoolNodes() {
			health := t.style(green, "healthy")
			if !n.GetHealthy() {
				health = t.style(red, "down")
			}
			t.printf("pool       %-20s %-24s %s\n", t.fit(n.GetNodeId(), 20), t.fit(n.GetAddress(), 24), health)
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func bytesStr(b uint64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", b>>10)
}

// poolCmd reads a pool node's state; --addr is the node, --tls-ca its CA.
func poolCmd(ctx context.Context, fs *flag.FlagSet, g *global, args []string, t *terminal) error {
	if len(args) == 0 || args[0] != "info" {
		return usageError{errors.New("pool needs info")}
	}
	cert := fs.String("tls-cert", "", "client certificate (a pool with mTLS authorizes by it: an admin's or a scheduler's)")
	key := fs.String("tls-key", "", "client certificate's key")
	if _, err := parse(fs, args[1:]); err != nil {
		return err
	}
	creds := insecure.NewCredentials()
	if g.tls || g.tlsCA != "" || *cert != "" {
		cfg, err := mtls.ClientConfig(g.tlsCA, *cert, *key, "")
		if err != nil {
			return err
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := blockpoolv1.NewBlockPoolServiceClient(conn).GetPoolInfo(ctx, &blockpoolv1.GetPoolInfoRequest{})
	if err != nil {
		return clientError(err)
	}
	b, _ := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(info)
	t.printf("%s\n", b)
	return nil
}

// clientError gives a raw gRPC error the SDK's kinds (for exit codes).
func clientError(err error) error { return client.Wrap(err) }
