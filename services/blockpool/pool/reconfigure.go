package pool

import (
	"context"
	"fmt"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// Reconfigured reports what a Reconfigure did.
type Reconfigured struct {
	DroppedBlocks, DroppedAgents int
}

// Reconfigure sets the spec and capacity (0 keeps the current one). It is
// refused (ErrLeasesActive) while any lease is active. A different spec drops
// every cached block and agent; a smaller capacity drops unreferenced cached
// blocks, then least-recently-used agents, until the cached blocks fit.
func (p *Pool) Reconfigure(ctx context.Context, spec kvspec.Spec, capacity int) (Reconfigured, error) {
	return p.ReconfigureIf(ctx, spec, capacity, nil)
}

// ReconfigureIf is Reconfigure under a condition: allow (if not nil) sees the
// current spec (nil while unconfigured) and capacity under the pool lock, so
// that nothing changes between its check and the reconfiguration; its error
// is returned as it is and nothing changes. The server's authorization uses it
// (a scheduler may only configure a pool that has no spec, or change
// nothing).
func (p *Pool) ReconfigureIf(ctx context.Context, spec kvspec.Spec, capacity int, allow func(cur *kvspec.Spec, capacity int) error) (Reconfigured, error) {
	if err := spec.Validate(); err != nil {
		fe, _ := err.(*kvspec.FieldError)
		if fe != nil {
			return Reconfigured{}, argErr("spec."+fe.Field, "%s", fe.Reason)
		}
		return Reconfigured{}, argErr("spec", "%v", err)
	}
	if capacity < 0 {
		return Reconfigured{}, argErr("capacity_blocks", "must not be negative")
	}
	// Checked before anything is allocated: the slot table's bookkeeping
	// alone is ~200 bytes a block, whatever the memory budget.
	if capacity > p.opt.MaxCapacity {
		return Reconfigured{}, argErr("capacity_blocks", "must be at most %d (the node's maximum), got %d", p.opt.MaxCapacity, capacity)
	}
	var (
		r     Reconfigured
		files []string
	)
	ps := &persistSet{meta: true}
	err := p.withLock(func() (err error) {
		if allow != nil && !p.closed {
			if err := allow(p.specLocked(), len(p.slots.slots)); err != nil {
				return err
			}
		}
		r, files, err = p.reconfigureLocked(spec, capacity, ps)
		return err
	})
	if err != nil {
		return Reconfigured{}, err
	}
	p.removeFiles(files)
	return r, p.persist(context.WithoutCancel(ctx), ps)
}

func (p *Pool) reconfigureLocked(spec kvspec.Spec, capacity int, ps *persistSet) (Reconfigured, []string, error) {
	var r Reconfigured
	if p.closed {
		return r, nil, ErrClosed
	}
	if n := p.leases.len(); n > 0 {
		return r, nil, fmt.Errorf("%w (%d)", ErrLeasesActive, n)
	}
	t := &p.slots
	if capacity == 0 {
		capacity = len(t.slots)
	}
	var files []string
	sameSpec := p.spec != nil && *p.spec == spec
	if !sameSpec {
		for e := range p.agents.all() {
			p.removeAgentLocked(e, ps)
			r.DroppedAgents++
		}
	}
	for t.nCached > capacity || !sameSpec && t.nCached > 0 {
		if t.lru.n == 0 {
			p.removeAgentLocked(p.agents.oldest(), ps)
			r.DroppedAgents++
			continue
		}
		files = append(files, t.evictOldest())
		r.DroppedBlocks++
	}
	p.setSpecLocked(spec, capacity, true)
	return r, files, nil
}
