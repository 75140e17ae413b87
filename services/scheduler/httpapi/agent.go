package httpapi

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// Headers that name the agent a request runs as.
const (
	HeaderAgentID   = "X-Agent-ID"
	HeaderSessionID = "X-Session-ID"
)

// agentID picks the agent a request runs as, which is whose cached context
// it reuses and extends (docs/http.md):
//
//  1. the X-Agent-ID header, else X-Session-ID: the client names the agent,
//     so it must be a valid agent id ([A-Za-z0-9._:-]{1,128}) or the
//     request is refused;
//  2. else user, the body's user (OpenAI) or metadata.user_id (Anthropic):
//     as it is when it is a valid agent id, else "user-" and a hash of it
//     (clients put e-mail addresses there);
//  3. else derive(): an id computed from the start of the conversation,
//     which stays the same as the conversation grows, so a client that
//     resends its whole history each turn lands on the same agent.
func agentID(r *http.Request, user string, derive func() string) (string, *apiError) {
	for _, h := range []string{HeaderAgentID, HeaderSessionID} {
		if v := r.Header.Get(h); v != "" {
			if !rpcstatus.ValidAgentID(v) {
				return "", badRequest(h, "must match [A-Za-z0-9._:-]{1,128}")
			}
			return v, nil
		}
	}
	if user != "" {
		if rpcstatus.ValidAgentID(user) {
			return user, nil
		}
		return hashID("user-", user), nil
	}
	return derive(), nil
}

// conversationID is the derived agent of a conversation: a hash of its first
// system message and its first user message ("" when it has none). Both
// APIs derive it the same way, so one conversation is one agent whichever
// API carries it.
func conversationID(system, user string) string {
	return hashID("conv-", system, user)
}

// promptPrefixBytes is how much of a completion prompt names its agent.
const promptPrefixBytes = 256

// promptID is the derived agent of a completion: a hash of the prompt's
// first promptPrefixBytes bytes, which a client that resends its text with
// the completion and more appended keeps unchanged once its prompt is that
// long.
func promptID(prompt string) string {
	return hashID("prompt-", prompt[:min(len(prompt), promptPrefixBytes)])
}

// hashID is prefix and 128 bits of SHA-256 over the length-prefixed parts
// (so ("ab", "c") and ("a", "bc") differ), in hex.
func hashID(prefix string, parts ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write([]byte(p))
	}
	return prefix + hex.EncodeToString(h.Sum(nil)[:16])
}
