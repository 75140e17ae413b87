package service

import (
	"slices"
	"testing"

	"github.com/semantic-kv/semantic/pkg/testproc"
)

// The service reaches the pool through the poolnode seam only: the gRPC
// client (poolclient) is handed in by whoever assembles the scheduler
// (runner), and the service's unit tests swap in poolnodetest.Fake. Linking
// the pool node itself would be worse still.
func TestReachesThePoolThroughTheSeamOnly(t *testing.T) {
	deps := testproc.ForbidDeps(t,
		"github.com/semantic-kv/semantic/services/scheduler/poolclient",
		"github.com/semantic-kv/semantic/services/blockpool")
	if !slices.Contains(deps, "github.com/semantic-kv/semantic/services/scheduler/poolnode") {
		t.Errorf("service no longer depends on poolnode; does this check still see its dependencies? %v", deps)
	}
}
