package poolclient

import (
	"slices"
	"testing"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// The pool client speaks the pool's wire contract (pkg/poolwire and the
// generated API) and nothing else of the pool: linking the pool's server, core
// or storage (bbolt) into every scheduler is what this boundary exists to
// prevent. Only the packages that assemble an embedded pool (embedded,
// runner, bench) may import services/blockpool.
func TestImportsNothingOfThePool(t *testing.T) {
	deps := testproc.ForbidDeps(t, "github.com/semantic-kv/semantic/services/blockpool", "go.etcd.io/bbolt")
	if !slices.Contains(deps, "github.com/semantic-kv/semantic/pkg/poolwire") {
		t.Errorf("poolclient no longer depends on pkg/poolwire; does this check still see its dependencies? %v", deps)
	}
}
