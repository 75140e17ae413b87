package poolwire

import (
	"encoding/base64"
	"regexp"
	"strings"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

// Agents are namespaced by tenant on the pool: the scheduler stores tenant
// T's agent A under the pool agent id "T/A" (AgentKey). Callers of the
// scheduler name agents without a "/" (rpcstatus.ValidAgentID), so no caller
// can spell another tenant's key; the pool reads the tenant back from the
// key (SplitAgentKey) to keep per-tenant bounds and to list one tenant.
// A scheduler without tenants (no API keys) uses the agent id as it is.

// MaxTenantLen bounds a tenant name.
const MaxTenantLen = 63

var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidTenant reports whether t is a tenant name: [a-z0-9][a-z0-9_-]{0,62}.
func ValidTenant(t string) bool { return tenantPattern.MatchString(t) }

// AgentKey is the pool agent id of tenant's agent (agent itself for the
// empty tenant).
func AgentKey(tenant, agent string) string {
	if tenant == "" {
		return agent
	}
	return tenant + "/" + agent
}

// SplitAgentKey is the inverse of AgentKey: the tenant ("" for none) and the
// agent id.
func SplitAgentKey(key string) (tenant, agent string) {
	if t, a, ok := strings.Cut(key, "/"); ok {
		return t, a
	}
	return "", key
}

// ValidAgentKey reports whether key is an agent id, or a tenant name, "/"
// and an agent id.
func ValidAgentKey(key string) bool {
	t, a := SplitAgentKey(key)
	if strings.Contains(key, "/") && !ValidTenant(t) {
		return false
	}
	return rpcstatus.ValidAgentID(a)
}

// CheckAgentKey is ValidAgentKey as an INVALID_ARGUMENT status naming field.
func CheckAgentKey(field, key string) error {
	if !ValidAgentKey(key) {
		show := key
		if len(show) > 64 {
			show = show[:64] + "..."
		}
		return rpcstatus.InvalidArgument(field, "must be an agent id [A-Za-z0-9._:-]{1,128}, optionally after a tenant [a-z0-9][a-z0-9_-]{0,62} and \"/\"; got %q", show)
	}
	return nil
}

// AgentPageToken is ListAgents' page token after the agent whose pool id is
// key: pages run in agent id order, so the token is the last id returned.
// The scheduler builds one to start a node's listing after a given agent.
func AgentPageToken(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }

// ParseAgentPageToken reads a token made by AgentPageToken.
func ParseAgentPageToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !ValidAgentKey(string(b)) {
		return "", rpcstatus.InvalidArgument("page_token", "malformed")
	}
	return string(b), nil
}
