package httpapi

import (
	"fmt"
	"math"
	"math/rand/v2"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// sampling is a request's generation parameters as the client sent them
// (nil: not given), with the names its API gives them. Both APIs check and
// translate them here, so every range and default is written once.
type sampling struct {
	maxTokens *int64
	maxField  string // "max_tokens" or "max_completion_tokens"
	// defaultMax is used when maxTokens is nil; 0 means the model's
	// context length (the service stops where the context ends).
	defaultMax  int64
	temperature *float64
	maxTemp     float64 // the API's upper bound: OpenAI 2, Anthropic 1
	topP        *float64
	topK        *int64
	seed        *int64
	stops       []string
	stopField   string // "stop" or "stop_sequences"
}

// apply checks the parameters and writes them into req in the service's
// terms. contextLen is the model's context length.
//
// Defaults follow the APIs, not the gRPC service: temperature 1, and a
// random seed when sampling without one (the same request twice gives two
// draws, as clients of these APIs expect); temperature 0 is greedy.
func (p sampling) apply(req *schedulerv1.GenerateRequest, contextLen int) *apiError {
	n := p.defaultMax
	if n == 0 {
		n = int64(contextLen)
	}
	if p.maxTokens != nil {
		n = *p.maxTokens
		if n < 1 || n > int64(contextLen) {
			return badRequest(p.maxField, "must be in 1..%d (the model's context length), got %d", contextLen, n)
		}
	}
	req.MaxTokens = uint32(min(n, int64(contextLen)))

	temp := 1.0
	if p.temperature != nil {
		temp = *p.temperature
		if !(temp >= 0 && temp <= p.maxTemp) {
			return badRequest("temperature", "must be in 0..%g, got %g", p.maxTemp, temp)
		}
	}
	if p.topP != nil {
		v := *p.topP
		switch {
		case !(v >= 0 && v <= 1):
			return badRequest("top_p", "must be in 0..1, got %g", v)
		case v == 0:
			// The nucleus of probability mass 0 is the most likely
			// token alone (the service reads top_p 0 as "off").
			temp = 0
		case v < 1:
			req.TopP = float32(v)
		}
	}
	if p.topK != nil {
		k := *p.topK
		if k < 0 || k > math.MaxUint32 {
			return badRequest("top_k", "must be a non-negative integer, got %d", k)
		}
		req.TopK = uint32(k) // at most the vocabulary: the service checks
	}
	req.Temperature = float32(temp)
	switch {
	case p.seed != nil:
		req.Seed = uint64(*p.seed) // every int64 is a distinct seed
	case temp > 0:
		req.Seed = rand.Uint64()
	}

	if len(p.stops) > service.MaxStops {
		return badRequest(p.stopField, "at most %d stop sequences, got %d", service.MaxStops, len(p.stops))
	}
	for i, s := range p.stops {
		if len(s) == 0 || len(s) > service.MaxStopBytes {
			return badRequest(fmt.Sprintf("%s[%d]", p.stopField, i), "must be 1..%d bytes, got %d", service.MaxStopBytes, len(s))
		}
	}
	req.Stop = p.stops
	return nil
}
