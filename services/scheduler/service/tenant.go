package service

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/poolwire"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/auth"
)

// Tenants. Every call runs as the auth.Principal its transport put in its
// context: its agents are stored on the pool under
// poolwire.AgentKey(tenant, agent_id), so tenant A's "alice" and tenant B's
// are different agents everywhere (records, locks, homes), and its blocks
// are hashed with tenantSalt, so no tenant's lookup can match another's
// blocks. The empty tenant (a scheduler without API keys) keeps agent ids
// and salts as they are.

// TenantRequestsSubject is the subject of the RESOURCE_EXHAUSTED status of a
// request beyond its tenant's max_requests (auth.Quota.MaxRequests).
const TenantRequestsSubject = rpcstatus.SubjectTenantRequests

// principal is who the call runs as. A call with no principal in its
// context runs as auth.Open, unless the scheduler has API keys
// (Config.RequirePrincipal): then a transport that skipped authentication
// fails closed.
func (s *Server) principal(ctx context.Context) (auth.Principal, error) {
	if p, ok := auth.FromContext(ctx); ok {
		return p, nil
	}
	if s.cfg.RequirePrincipal {
		return auth.Principal{}, status.Error(codes.Unauthenticated, "this scheduler requires an API key, and the call was not authenticated")
	}
	return auth.Open, nil
}

// scope resolves the tenant field of an agent call against the caller: ""
// is the caller's own tenant; another tenant, or "*" (every tenant; only
// where star is allowed, ListAgents), needs an admin key.
func (s *Server) scope(ctx context.Context, tenant string, star bool) (_ string, all bool, _ error) {
	p, err := s.principal(ctx)
	if err != nil {
		return "", false, err
	}
	switch {
	case tenant == "":
		return p.Tenant, false, nil
	case tenant == "*" && !star:
		return "", false, rpcstatus.InvalidArgument("tenant", "\"*\" (every tenant) is only for ListAgents: name one tenant")
	case tenant != "*" && !poolwire.ValidTenant(tenant):
		return "", false, rpcstatus.InvalidArgument("tenant", "must be a tenant name [a-z0-9][a-z0-9_-]{0,62}, or empty for your own")
	case tenant == p.Tenant:
		return tenant, false, nil
	case p.Role != auth.RoleAdmin:
		return "", false, status.Errorf(codes.PermissionDenied, "tenant: key %q of tenant %q may only reach its own tenant's agents (leave tenant empty); other tenants need an admin key", p.KeyName, p.Tenant)
	}
	return tenant, tenant == "*", nil
}

// tenantSalt is the cache salt the pool sees for a request of tenant with
// the request's cache_salt: the salt itself for the empty tenant (so that
// the caches of a scheduler without keys stay warm), else a fixed-length
// digest of both, which no other tenant's requests can produce (tenant
// names hold no NUL, so tenant+"\x00"+salt names one pair; the digest
// fits poolwire.MaxSaltLen whatever the salt's length). Lookup, block hashes and commit all use it (the
// request's salt field), so they agree.
func tenantSalt(tenant, salt string) string {
	if tenant == "" {
		return salt
	}
	h := sha256.Sum256([]byte(tenant + "\x00" + salt))
	return "t1:" + base64.RawURLEncoding.EncodeToString(h[:])
}

// tenantRequests counts each tenant's Generate requests in flight (waiting
// or running) on this scheduler, against its quota.
type tenantRequests struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes one of the tenant's limit slots (limit <= 0: unbounded,
// nothing counted). The func releases it; false means the tenant is at its
// limit.
func (t *tenantRequests) acquire(tenant string, limit int) (func(), bool) {
	if limit <= 0 {
		return func() {}, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n[tenant] >= limit {
		return nil, false
	}
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[tenant]++
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.n[tenant]--; t.n[tenant] == 0 {
			delete(t.n, tenant)
		}
	}, true
}
