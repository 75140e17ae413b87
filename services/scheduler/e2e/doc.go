// Package e2e holds the end-to-end test of a real multi-node cluster: the
// docker-compose.yml at the repository root (three block-pool nodes, one
// scheduler, a second scheduler behind a profile), driven through the
// published gRPC ports. The test is behind the build tag e2e so that `go test
// ./...` does not need Docker; run it with `make e2e` (which builds the images
// first) or
//
//	make images
//	go test -tags e2e -count=1 -v -timeout 20m ./services/scheduler/e2e/
//
// Environment:
//
//	COMPOSE              compose command ("docker compose" or "docker-compose"; default: whichever works)
//	SEMANTIC_E2E_MODEL   model the schedulers run (default builtin:tiny; compose's own default is builtin:small)
//	SEMANTIC_E2E_AGENTS  number of agents (default 20)
//	SEMANTIC_E2E_KEEP    when set, the cluster is left running after the test (for debugging)
//	SEMANTIC_POOL_TARGETS  the schedulers' --pool (default in compose: dns:///pool:50061)
//	CI=true              Docker or compose missing is a failure instead of a skip
package e2e
