# semantic — build, test, lint, run.
#   make run     the scheduler with its embedded pool and built-in model (:50051, HTTP API :8080, metrics :9090)
#   make test    every module's tests with -race
#   make lint    go vet, gofmt, staticcheck, buf lint, generated-code check
#   make build   static binaries in bin/
SHELL := /bin/bash
.DEFAULT_GOAL := build

GO          ?= go
MODULES     := pkg services/blockpool services/scheduler deploy
PKGS        := $(addprefix ./,$(addsuffix /...,$(MODULES)))
TOOLS_BIN   := $(CURDIR)/.tools/bin
export PATH := $(TOOLS_BIN):$(PATH)
export GOFLAGS := -buildvcs=false

# Pinned tool versions (installed with `go install`, no other network use).
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
GRPCURL_VERSION            := v1.9.3
STATICCHECK_MODULE_VERSION := v0.8.2
HELM_VERSION               := v3.22.0

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/semantic-kv/semantic/pkg/app.Version=$(VERSION)
TEST_TIMEOUT ?= 40m
TEST_FLAGS   ?=

# ---- tools -------------------------------------------------------------------
TOOL_STAMPS := $(TOOLS_BIN)/.buf-$(BUF_VERSION) $(TOOLS_BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) \
               $(TOOLS_BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION) $(TOOLS_BIN)/.grpcurl-$(GRPCURL_VERSION) \
               $(TOOLS_BIN)/.staticcheck-$(STATICCHECK_MODULE_VERSION) $(TOOLS_BIN)/.helm-$(HELM_VERSION)

.PHONY: tools
tools: $(TOOL_STAMPS) ## install pinned tools into .tools/bin

$(TOOLS_BIN)/.buf-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install github.com/bufbuild/buf/cmd/buf@$*
	touch $@
$(TOOLS_BIN)/.protoc-gen-go-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$*
	touch $@
$(TOOLS_BIN)/.protoc-gen-go-grpc-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$*
	touch $@
$(TOOLS_BIN)/.grpcurl-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install github.com/fullstorydev/grpcurl/cmd/grpcurl@$*
	touch $@
$(TOOLS_BIN)/.staticcheck-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install honnef.co/go/tools/cmd/staticcheck@$*
	touch $@
$(TOOLS_BIN)/.helm-%:
	GOBIN=$(TOOLS_BIN) GOWORK=off $(GO) install helm.sh/helm/v3/cmd/helm@$*
	touch $@

# ---- build -------------------------------------------------------------------
.PHONY: build
build: ## static binaries bin/scheduler, bin/blockpool, bin/semantic (CLI), bin/semantic-gguf and bin/semantic-auth
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/scheduler ./services/scheduler
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/blockpool ./services/blockpool
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/semantic-gguf ./services/scheduler/cmd/semantic-gguf
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/semantic-auth ./services/scheduler/cmd/semantic-auth
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/semantic ./services/scheduler/cmd/semantic

# `make run` settings; override on the command line (make run MODEL=builtin:tiny).
MODEL          ?= builtin:small
DATA_DIR       ?= ./data
LISTEN         ?= :50051
METRICS_LISTEN ?= :9090
HTTP_LISTEN    ?= :8080

.PHONY: run
run: build ## the scheduler with its embedded pool and the default model
	exec bin/scheduler --model $(MODEL) --data-dir $(DATA_DIR) --listen $(LISTEN) --metrics-listen '$(METRICS_LISTEN)' --http-listen '$(HTTP_LISTEN)'

.PHONY: run-pool
run-pool: build ## a standalone pool node on :50061
	bin/blockpool --data-dir ./data/pool --listen :50061 --metrics-listen :9091

# ---- proto -------------------------------------------------------------------
.PHONY: proto
proto: $(TOOL_STAMPS) ## regenerate pkg/api from proto/
	buf lint
	buf generate

.PHONY: proto-check
proto-check: $(TOOL_STAMPS) ## fail when the committed generated code differs from a fresh generation
	buf generate
	@if [ -n "$$(git status --porcelain -- pkg/api)" ]; then \
		echo "generated code in pkg/api is stale: run 'make proto' and commit"; git status --porcelain -- pkg/api; exit 1; fi

.PHONY: breaking
breaking: $(TOOL_STAMPS) ## buf breaking against main
	@if git rev-parse --verify -q main >/dev/null && git ls-tree -d main proto >/dev/null 2>&1 && [ -n "$$(git ls-tree main proto)" ]; then \
		buf breaking --against '.git#branch=main'; else echo "breaking: main has no proto/ yet"; fi

# ---- checks ------------------------------------------------------------------
.PHONY: lint
lint: $(TOOL_STAMPS) tracked-check ## vet, gofmt, staticcheck, buf lint, helm lint, promtool, generated-code check, breaking, no build outputs tracked
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	staticcheck $(PKGS)
	buf lint
	helm lint --strict deploy/helm/semantic
	helm lint --strict deploy/helm/semantic --set tls.enabled=true --set auth.enabled=true
	@command -v promtool >/dev/null || { echo "lint: promtool is missing (apt-get install prometheus)"; exit 1; }
	promtool check rules deploy/monitoring/alerts.yml
	promtool test rules deploy/monitoring/alerts_test.yml
	$(MAKE) --no-print-directory proto-check breaking

# Build outputs and data must never be committed: refuse tracked files over
# 1 MiB outside testdata/ and any tracked executable binary (ELF).
.PHONY: tracked-check
tracked-check:
	@bad=$$(git ls-files -z | while IFS= read -r -d '' f; do \
		[ -f "$$f" ] || continue; \
		case "$$f" in */testdata/*) continue;; esac; \
		if [ $$(stat -c %s "$$f") -gt 1048576 ] || [ "$$(head -c 4 "$$f" | od -An -c | tr -d ' ')" = "177ELF" ]; then echo "$$f"; fi; \
	done); \
	if [ -n "$$bad" ]; then echo "tracked build outputs or large files (git rm --cached them):"; echo "$$bad"; exit 1; fi

.PHONY: test
test: ## every module's tests with -race
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(PKGS)

.PHONY: bench
bench: ## all benchmarks (see docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

.PHONY: bench-e2e
bench-e2e: ## end-to-end: TTFT cold vs warm, batched decode (docs/performance.md)
	$(GO) run ./services/scheduler/cmd/semantic-bench $(BENCH_ARGS)

.PHONY: bench-peers
bench-peers: ## semantic vs ollama vs llama2.c run.c on the same files, same threads (docs/performance.md; PEERS_ARGS="--reps 3 ...")
	python3 scripts/bench-peers.py $(PEERS_ARGS)

.PHONY: clean
clean:
	rm -rf bin

.PHONY: help
help:
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# ---- containers (docker-compose.yml, deploy/, docs/cluster.md) -----------------
# The compose command: the v2 plugin when installed, else docker-compose v1.
COMPOSE     ?= $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
E2E_TIMEOUT ?= 20m

.PHONY: images
images: build ## images semantic/scheduler:dev and semantic/blockpool:dev (FROM scratch around bin/, nothing pulled)
	docker build -f deploy/scheduler.Dockerfile -t semantic/scheduler:dev .
	docker build -f deploy/blockpool.Dockerfile -t semantic/blockpool:dev .

# The compose cluster's credentials (docs/security.md), made once and kept: a
# CA and certificates for mutual TLS between the nodes, and API keys. The
# containers run as uid 65532, so their key files are made readable to it
# (0644): development credentials for one machine, never production ones.
SECRETS ?= deploy/compose/secrets

.PHONY: compose-secrets
compose-secrets: build ## the compose cluster's CA, certificates and API keys in deploy/compose/secrets
	@[ -f $(SECRETS)/ca.pem ] || bin/semantic-auth certs --out $(SECRETS) --key-mode 0644 \
		--pool-hosts pool,pool1,pool2,pool3,localhost,127.0.0.1 --schedulers scheduler,scheduler2
	@[ -f $(SECRETS)/client.key ] || { bin/semantic-auth key --file $(SECRETS)/keys.json --name demo --tenant demo > $(SECRETS)/client.key && \
		bin/semantic-auth key --file $(SECRETS)/keys.json --name ops --tenant ops --role admin > $(SECRETS)/admin.key && \
		chmod 0644 $(SECRETS)/keys.json; }

.PHONY: compose-up
compose-up: images compose-secrets ## one scheduler (:50051, HTTP :8080, metrics :9090) and three pool nodes, mTLS and API keys
	$(COMPOSE) up -d
	@for i in $$(seq 1 60); do \
		[ "$$(docker inspect -f '{{.State.Health.Status}}' $$($(COMPOSE) ps -q scheduler) 2>/dev/null)" = healthy ] && break; sleep 1; done
	$(COMPOSE) ps
	@echo "scheduler: localhost:50051, HTTP localhost:8080, metrics localhost:9090/metrics; API key: $(SECRETS)/client.key"
	@echo "  grpcurl -plaintext -H \"authorization: Bearer \$$(cat $(SECRETS)/client.key)\" localhost:50051 list   (docs/cluster.md, docs/security.md)"

.PHONY: compose-down
compose-down: ## stop the compose cluster (every profile) and remove its volumes
	$(COMPOSE) --profile scheduler2 --profile observability down -v --remove-orphans

# e2e checks for Docker when it is asked for (and only then), so that without
# Docker it is skipped, or fails when CI=true.
ifneq ($(filter e2e,$(MAKECMDGOALS)),)
E2E_DOCKER := $(shell docker info >/dev/null 2>&1 && echo yes)
endif

.PHONY: e2e
e2e: $(if $(E2E_DOCKER),images) ## images, then the end-to-end test of the compose cluster (no Docker: skipped; a failure when CI=true)
ifeq ($(E2E_DOCKER),yes)
	COMPOSE="$(COMPOSE)" $(GO) test -tags e2e -count=1 -v -timeout $(E2E_TIMEOUT) ./services/scheduler/e2e/
else
	@if [ "$$CI" = true ]; then echo "e2e: CI=true and Docker is not available (docker info failed)" >&2; exit 1; fi; \
	echo "e2e: Docker is not available: skipped (with CI=true this is a failure)"
endif
