module github.com/semantic-kv/semantic/services/scheduler

go 1.26.8

require (
	github.com/semantic-kv/semantic/pkg v0.0.0
	github.com/semantic-kv/semantic/services/blockpool v0.0.0
	go.uber.org/goleak v1.3.0
)

replace github.com/semantic-kv/semantic/pkg => ../../pkg

replace github.com/semantic-kv/semantic/services/blockpool => ../blockpool
