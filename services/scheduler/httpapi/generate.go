package httpapi

import (
	"net/http"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/services/scheduler/service"
)

// errClientGone ends a request whose client went away: nothing is written,
// and it is counted as 499.
var errClientGone = &apiError{status: statusClientClosed, message: "the client went away"}

// generateCall is an API request checked and translated into the
// service's, with how to answer it.
type generateCall struct {
	req          *schedulerv1.GenerateRequest
	stream       bool
	includeUsage bool // OpenAI: stream_options.include_usage
}

// generation is a request's run through the service.
type generation struct {
	final  *schedulerv1.GenerateResponse // finish reason and usage
	tokens []uint32                      // the generated ids
}

// generate runs req through the service. onText receives the generated text
// in order as it comes (never ""), including what the final message carries;
// an error from it (the client stopped reading) ends the generation. An
// error that the client can no longer receive is errClientGone.
func (h *Handler) generate(c *call, req *schedulerv1.GenerateRequest, stream bool, onText func(string) error) (*generation, error) {
	g := &generation{}
	c.rec.agent = req.GetAgentId()
	c.w.Header().Set(HeaderAgentID, req.GetAgentId())
	var writeErr error
	err := h.cfg.Service.Run(c.r.Context(), req, func(m *schedulerv1.GenerateResponse) error {
		if m.GetUsage() == nil {
			if len(g.tokens) == 0 {
				h.tel.firstToken(c, stream)
			}
			g.tokens = append(g.tokens, m.GetTokenId())
		} else {
			g.final = m
		}
		if t := m.GetText(); t != "" {
			if err := onText(t); err != nil {
				writeErr = err
				return err
			}
		}
		return nil
	})
	switch {
	case writeErr != nil || c.r.Context().Err() != nil:
		return g, errClientGone
	case err != nil:
		return g, err
	case g.final == nil:
		return g, &apiError{status: http.StatusInternalServerError, message: "generation ended without its final message"}
	}
	setTurnSaved(c, g.final.GetUsage())
	return g, nil
}

// Response headers that say whether the turn was saved as the agent's
// record (service.Usage.turn_saved): a response without
// X-Semantic-Turn-Saved: true means the next append will not see this turn.
const (
	HeaderTurnSaved         = "X-Semantic-Turn-Saved"
	HeaderTurnUnsavedReason = "X-Semantic-Turn-Unsaved-Reason"
)

// setTurnSaved sets the turn-saved headers: as headers when the response has
// not begun (non-streaming), as HTTP trailers after a stream's body.
func setTurnSaved(c *call, u *schedulerv1.Usage) {
	prefix := ""
	if c.rec.status != 0 {
		prefix = http.TrailerPrefix
	}
	h := c.w.Header()
	if u.GetTurnSaved() {
		h.Set(prefix+HeaderTurnSaved, "true")
		return
	}
	h.Set(prefix+HeaderTurnSaved, "false")
	h.Set(prefix+HeaderTurnUnsavedReason, u.GetTurnUnsavedReason())
}

// stopSequence is the stop sequence that ended the generation, "" when none
// did.
func (g *generation) stopSequence(stops []string, tokenBytes func(uint32) []byte) string {
	if g.final.GetFinishReason() != schedulerv1.FinishReason_FINISH_REASON_STOP || tokenBytes == nil {
		return ""
	}
	var b []byte
	for _, id := range g.tokens {
		b = append(b, tokenBytes(id)...)
	}
	return service.MatchedStop(stops, b)
}

// checkModel answers 404 unless name is the served model.
func (h *Handler) checkModel(name string) *apiError {
	switch name {
	case h.cfg.Model.ID:
		return nil
	case "":
		return badRequest("model", "is required (this server serves %q)", h.cfg.Model.ID)
	}
	return &apiError{status: http.StatusNotFound, param: "model", code: "model_not_found",
		message: "model " + quote(name) + " is not served here; GET /v1/models lists " + quote(h.cfg.Model.ID)}
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}
