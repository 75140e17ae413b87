// Command semantic is the command-line client of a semantic scheduler, built
// on the Go SDK (pkg/client):
//
//	semantic chat --agent NAME            talk to an agent; its context stays warm between turns and runs
//	semantic generate --agent NAME TEXT   one request, for scripts (--json for the whole result)
//	semantic agents ls|show|rm            the caller's agents
//	semantic stats                        a live view of the scheduler
//	semantic pool info --addr HOST:PORT   a pool node's state
//
// Global flags (also SEMANTIC_ADDR, SEMANTIC_API_KEY, ...): --addr, --api-key,
// --tls, --tls-ca. Exit codes: 0 ok, 1 failure, 2 usage, 3 not found,
// 4 unauthenticated or permission denied, 5 unavailable or busy (retry).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newTerm(os.Stdin, os.Stdout, os.Stderr))
	stop()
	os.Exit(code)
}
