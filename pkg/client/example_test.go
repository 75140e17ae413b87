package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/semantic-kv/semantic/pkg/client"
)

// A request streamed token by token, then the same agent's next turn: its
// first turn (prompt and reply) comes from the cache.
func Example() {
	ctx := context.Background()
	c, err := client.Dial(server, client.WithAPIKey(userKey))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	s := c.Generate(ctx, &client.GenerateRequest{AgentId: "example", Prompt: "Once upon a time", MaxTokens: 8})
	n := 0
	for tok, err := range s.Tokens() {
		if err != nil {
			log.Fatal(err)
		}
		_ = tok.Text // print it as it comes
		n++
	}
	fmt.Println("tokens:", n, "cached:", s.Usage().GetCachedTokens(), "saved:", s.Usage().GetTurnSaved())

	// The next turn continues the stored context (append): only the new
	// text is prefilled.
	res, err := c.Complete(ctx, &client.GenerateRequest{AgentId: "example", Prompt: " and then", Append: true, MaxTokens: 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("cached:", res.Usage.GetCachedTokens() >= res.Usage.GetPromptTokens()-len32(" and then"))
	// Output:
	// tokens: 8 cached: 0 saved: true
	// cached: true
}

// len32 is a byte-level prompt's token count (builtin:tiny's tokenizer).
func len32(s string) uint32 { return uint32(len(s)) }

// A conversation keeps its messages; every turn resends them and the
// scheduler reuses what it has already computed.
func ExampleConversation() {
	ctx := context.Background()
	c, err := client.Dial(server, client.WithAPIKey(userKey))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	conv := c.Conversation("example-chat", "You are terse.")
	conv.Request.MaxTokens = 6
	first, err := conv.Say(ctx, "Hello!")
	if err != nil {
		log.Fatal(err)
	}
	second, err := conv.Say(ctx, "And again?")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("messages:", len(conv.Messages()))
	fmt.Println("first turn cached:", first.Usage.GetCachedTokens())
	fmt.Println("second turn reuses the first:", second.Usage.GetCachedTokens() > first.Usage.GetPromptTokens())
	// Output:
	// messages: 5
	// first turn cached: 0
	// second turn reuses the first: true
}

// Errors are values: no status codes to parse.
func ExampleError() {
	ctx := context.Background()
	anon, err := client.Dial(server) // no key
	if err != nil {
		log.Fatal(err)
	}
	defer anon.Close()
	_, err = anon.Complete(ctx, &client.GenerateRequest{AgentId: "x", Prompt: "hi", MaxTokens: 1})
	fmt.Println(errors.Is(err, client.ErrUnauthenticated))

	c, _ := client.Dial(server, client.WithAPIKey(userKey))
	defer c.Close()
	_, err = c.Complete(ctx, &client.GenerateRequest{AgentId: "x", Prompt: "hi", MaxTokens: 0})
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Println(errors.Is(err, client.ErrInvalidArgument), e.Field)
	}
	_, err = c.Agent(ctx, "nobody-here")
	fmt.Println(errors.Is(err, client.ErrNotFound))
	_, err = c.Agent(ctx, "example", client.InTenant("rival"))
	fmt.Println(errors.Is(err, client.ErrPermissionDenied))
	// Output:
	// true
	// true max_tokens
	// true
	// true
}

// Agents pages through the caller's agents as an iterator.
func ExampleClient_Agents() {
	ctx := context.Background()
	c, _ := client.Dial(server, client.WithAPIKey(otherKey))
	defer c.Close()
	for _, id := range []string{"lister-b", "lister-a", "lister-c"} {
		if _, err := c.Complete(ctx, &client.GenerateRequest{AgentId: id, Prompt: "hi", MaxTokens: 1}); err != nil {
			log.Fatal(err)
		}
	}
	for a, err := range c.Agents(ctx, client.PageSize(2)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(a.GetTenant(), a.GetAgentId())
	}
	deleted, _ := c.DeleteAgent(ctx, "lister-a")
	fmt.Println("deleted:", deleted)
	// Output:
	// rival lister-a
	// rival lister-b
	// rival lister-c
	// deleted: true
}
