package server

import (
	"context"
	"slices"
	"strings"

	"github.com/semantic-kv/semantic/pkg/kvspec"
	"github.com/semantic-kv/semantic/pkg/mtls"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Authorization. When the pool verifies client certificates (RequireIdentity;
// the blockpool binary's --tls-client-ca), every BlockPoolService call needs a
// certificate that chains to the pool's client CA (mtls.FromContext), and the
// identity's groups (the certificate's Organization) must be among those the
// method's rule names. Health and reflection are other services and stay open.
// Without RequireIdentity everyone who reaches the port may call everything
// (the binary warns at start).
//
// Leases are bound to the identity that took them: the pool's holder of a
// lease is the identity's name and the request's holder (leaseHolder), so
// another certificate presenting the same holder string is another holder
// (PERMISSION_DENIED), even one of the same group.

// Method names of semantic.blockpool.v1.BlockPoolService, the keys of rules.
const (
	methodGetPoolInfo = "GetPoolInfo"
	methodReconfigure = "Reconfigure"
	methodLease       = "Lease"
	methodKeepAlive   = "KeepAlive"
	methodRelease     = "Release"
	methodPutBlocks   = "PutBlocks"
	methodGetBlocks   = "GetBlocks"
	methodCommitAgent = "CommitAgent"
	methodLookupAgent = "LookupAgent"
	methodListAgents  = "ListAgents"
	methodGetAgent    = "GetAgent"
	methodDeleteAgent = "DeleteAgent"
)

var schedulerOrAdmin = []string{mtls.GroupScheduler, mtls.GroupAdmin}

// rules is who may call each method: the one table of the pool's
// authorization. A method missing from it is refused to everyone.
// Reconfigure is further limited for schedulers by reconfigureAllowed.
var rules = map[string][]string{
	methodGetPoolInfo: schedulerOrAdmin,
	methodReconfigure: schedulerOrAdmin, // schedulers: only a first configuration or a no-op
	methodLease:       schedulerOrAdmin,
	methodKeepAlive:   schedulerOrAdmin,
	methodRelease:     schedulerOrAdmin,
	methodPutBlocks:   schedulerOrAdmin,
	methodGetBlocks:   schedulerOrAdmin,
	methodCommitAgent: schedulerOrAdmin,
	methodLookupAgent: schedulerOrAdmin,
	methodListAgents:  schedulerOrAdmin,
	methodGetAgent:    schedulerOrAdmin,
	methodDeleteAgent: schedulerOrAdmin,
}

// maxIdentityName bounds the name of an identity, which every lease it takes
// carries (leaseHolder).
const maxIdentityName = 256

// authorize checks that the caller may call method: nothing to check without
// RequireIdentity; else a verified identity (UNAUTHENTICATED without one) in
// a group the method's rule names (PERMISSION_DENIED otherwise).
func (s *Server) authorize(ctx context.Context, method string) error {
	if !s.requireIdentity {
		return nil
	}
	id, ok := mtls.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "this block pool needs a client certificate issued by its client CA (--tls-client-ca): connect with TLS and a scheduler or admin certificate")
	}
	if id.Name == "" || len(id.Name) > maxIdentityName || strings.ContainsRune(id.Name, 0) {
		return status.Errorf(codes.PermissionDenied, "the client certificate's common name must be 1..%d bytes without NUL: it names the holder of the caller's leases", maxIdentityName)
	}
	groups := rules[method]
	if !slices.ContainsFunc(groups, id.In) {
		return status.Errorf(codes.PermissionDenied, "identity %q (groups %q) may not call %s: it needs a certificate of group %s",
			id.Name, id.Groups, method, strings.Join(groups, " or "))
	}
	return nil
}

// reconfigureAllowed is the rule on Reconfigure beyond rules, checked by the
// pool under its lock (pool.ReconfigureIf) against its current spec and
// capacity: an admin may reconfigure anything; a scheduler may configure a
// pool that has no spec yet (its first configuration), or send one that
// changes nothing. Reconfiguring a configured pool drops agents and blocks,
// which only an operator may decide. Nil without RequireIdentity: anyone may.
func (s *Server) reconfigureAllowed(ctx context.Context, spec kvspec.Spec, capacity int) func(*kvspec.Spec, int) error {
	if !s.requireIdentity {
		return nil
	}
	if id, ok := mtls.FromContext(ctx); ok && id.In(mtls.GroupAdmin) {
		return nil
	}
	return func(cur *kvspec.Spec, curCapacity int) error {
		if cur == nil || *cur == spec && (capacity == 0 || capacity == curCapacity) {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "reconfiguring a configured pool needs an admin certificate (group %s); this pool has spec %s, capacity %d",
			mtls.GroupAdmin, cur.String(), curCapacity)
	}
}

// leaseHolder is the holder a lease is bound to in the pool: with a verified
// identity, its name, a NUL and the request's holder (the name holds no NUL,
// so the pair is unambiguous), so that only the certificate that took a
// lease can use it; without one, the request's holder as it is.
func leaseHolder(ctx context.Context, holder string) string {
	if id, ok := mtls.FromContext(ctx); ok {
		return id.Name + "\x00" + holder
	}
	return holder
}
