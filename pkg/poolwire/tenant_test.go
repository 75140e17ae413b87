package poolwire

import (
	"strings"
	"testing"
)

func TestAgentKeys(t *testing.T) {
	for _, c := range []struct {
		tenant, agent, key string
	}{
		{"", "alice", "alice"},
		{"acme", "alice", "acme/alice"},
		{"a-b_c9", "x:y.z-1", "a-b_c9/x:y.z-1"},
	} {
		if k := AgentKey(c.tenant, c.agent); k != c.key {
			t.Errorf("AgentKey(%q, %q) = %q, want %q", c.tenant, c.agent, k, c.key)
		}
		if tn, a := SplitAgentKey(c.key); tn != c.tenant || a != c.agent {
			t.Errorf("SplitAgentKey(%q) = %q, %q", c.key, tn, a)
		}
		if !ValidAgentKey(c.key) || CheckAgentKey("agent_id", c.key) != nil {
			t.Errorf("%q refused", c.key)
		}
	}
	for _, bad := range []string{"", "/alice", "Acme/alice", "acme/", "acme/a/b", "a b", strings.Repeat("t", 64) + "/a",
		"acme/" + strings.Repeat("a", 129), "-acme/a"} {
		if ValidAgentKey(bad) || CheckAgentKey("agent_id", bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !ValidTenant(strings.Repeat("t", 63)) || ValidTenant(strings.Repeat("t", 64)) {
		t.Error("tenant length bound is not 63")
	}
}
