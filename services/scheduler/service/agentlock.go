package service

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/status"
)

// agentLocks serialises requests of one agent: the second waits for the
// first, bounded by its own deadline. Waiting (rather than refusing) is what a
// chat client that fires the next turn right after the last expects, and the
// deadline keeps a stuck first request from holding the second forever.
type agentLocks struct {
	mu    sync.Mutex
	locks map[string]*agentLock
}

type agentLock struct {
	ch   chan struct{} // holds one token while the agent is busy
	refs int           // holders and waiters; the entry goes when it drops to 0
}

func newAgentLocks() *agentLocks { return &agentLocks{locks: map[string]*agentLock{}} }

// errAgentQueueFull is lock's answer when the agent has limit requests
// already (running or waiting).
var errAgentQueueFull = errors.New("agent queue full")

// lock waits for the agent to be free or for ctx to end (DEADLINE_EXCEEDED or
// CANCELLED). The returned func unlocks. With limit > 0, an agent that has
// limit requests already (the holder and its waiters) is refused at once
// with errAgentQueueFull.
func (a *agentLocks) lock(ctx context.Context, agent string, limit int) (func(), error) {
	a.mu.Lock()
	l := a.locks[agent]
	if l == nil {
		l = &agentLock{ch: make(chan struct{}, 1)}
		a.locks[agent] = l
	}
	if limit > 0 && l.refs >= limit {
		a.mu.Unlock()
		return nil, errAgentQueueFull
	}
	l.refs++
	a.mu.Unlock()

	select {
	case l.ch <- struct{}{}:
		return func() {
			<-l.ch
			a.put(agent, l)
		}, nil
	case <-ctx.Done():
		a.put(agent, l)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (a *agentLocks) put(agent string, l *agentLock) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l.refs--
	if l.refs == 0 {
		delete(a.locks, agent)
	}
}

// requests is the number of the agent's requests holding or waiting for
// its lock.
func (a *agentLocks) requests(agent string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.locks[agent]; l != nil {
		return l.refs
	}
	return 0
}

// busy is the number of agents with a holder or waiter (for tests).
func (a *agentLocks) busy() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.locks)
}
