// Command openai-chat talks to a semantic scheduler (`make run`) with the
// official OpenAI Go SDK: it streams a first answer, then sends the next
// turn with the whole conversation, as every chat client does, and prints
// how many of its prompt tokens the scheduler reused from the cache.
//
//	make run                                  # in one terminal
//	go run ./services/scheduler/examples/openai-chat   # in another
//
// Flags: -url (default http://localhost:8080/v1/), -agent (an X-Agent-ID;
// without one the scheduler derives the agent from the conversation).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func main() {
	url := flag.String("url", "http://localhost:8080/v1/", "the scheduler's OpenAI-compatible API")
	agent := flag.String("agent", "", "agent id (X-Agent-ID header); empty: derived from the conversation")
	flag.Parse()

	opts := []option.RequestOption{option.WithBaseURL(*url), option.WithAPIKey("unused")}
	if *agent != "" {
		opts = append(opts, option.WithHeader("X-Agent-ID", *agent))
	}
	client := openai.NewClient(opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The scheduler serves one model: ask which.
	models, err := client.Models.List(ctx)
	if err != nil || len(models.Data) == 0 {
		log.Fatalf("listing models: %v", err)
	}
	model := models.Data[0].ID
	fmt.Printf("model %s\n\n", model)

	messages := []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("You are a storyteller."),
		openai.UserMessage("Once upon a time, Lily went to the park."),
	}

	// Turn 1, streamed.
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: model, Messages: messages, MaxTokens: openai.Int(48),
		StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
	})
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		chunk := stream.Current()
		acc.AddChunk(chunk)
		if len(chunk.Choices) > 0 {
			fmt.Print(chunk.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		log.Fatalf("turn 1: %v", err)
	}
	fmt.Printf("\n\nturn 1: %d prompt tokens, %d cached, %d generated\n\n",
		acc.Usage.PromptTokens, acc.Usage.PromptTokensDetails.CachedTokens, acc.Usage.CompletionTokens)

	// Turn 2: the whole conversation again. Its prefix, turn 1's prompt and
	// reply, is served from the cache.
	messages = append(messages, acc.Choices[0].Message.ToParam(), openai.UserMessage(" What happened next?"))
	reply, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model: model, Messages: messages, MaxTokens: openai.Int(48),
	})
	if err != nil {
		log.Fatalf("turn 2: %v", err)
	}
	fmt.Println(reply.Choices[0].Message.Content)
	u := reply.Usage
	fmt.Printf("\nturn 2: %d prompt tokens, %d cached, %d generated\n", u.PromptTokens, u.PromptTokensDetails.CachedTokens, u.CompletionTokens)
	if u.PromptTokensDetails.CachedTokens == 0 {
		os.Exit(1)
	}
}
