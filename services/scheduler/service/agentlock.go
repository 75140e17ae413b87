package service

import (
	"context"
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

// lock waits for the agent to be free or for ctx to end (DEADLINE_EXCEEDED or
// CANCELLED). The returned func unlocks.
func (a *agentLocks) lock(ctx context.Context, agent string) (func(), error) {
	a.mu.Lock()
	l := a.locks[agent]
	if l == nil {
		l = &agentLock{ch: make(chan struct{}, 1)}
		a.locks[agent] = l
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

// busy is the number of agents with a holder or waiter (for tests).
func (a *agentLocks) busy() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.locks)
}
