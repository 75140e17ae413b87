package pool

import (
	"container/list"
	"fmt"
	"iter"
	"maps"
	"time"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// agentRec is an immutable agent record: a commit builds a new one.
type agentRec struct {
	ID, ModelTag, Salt string
	Hashes             []kvspec.Hash
	Tokens             []uint32
	Version            uint64
	Created            time.Time
}

type agentEntry struct {
	rec      *agentRec
	lastUsed time.Time
	elem     *list.Element // in agentTable.lru
}

// agentTable is the agent records by id, in least-recently-used order (the
// order in which agents are dropped when blocks or disk run short), with the
// count and bytes of each tenant's records (for the per-tenant bounds of a
// commit). Guarded by the pool lock; the references a record holds on blocks
// are counted in the slot table by the pool.
type agentTable struct {
	byID  map[string]*agentEntry
	lru   *list.List // of *agentEntry; front = least recently used
	bytes int64      // sum of recBytes over the records
	// tenantOf names an agent id's tenant ("" for none; Options.TenantOf);
	// nil: no agent has a tenant.
	tenantOf func(id string) string
	tenants  map[string]tenantUse // by non-empty tenant; no zero entries
}

// tenantUse is what one tenant's records hold.
type tenantUse struct {
	agents int
	bytes  int64
}

// recBytes is what a record costs in memory, roughly: its token ids, hashes,
// strings and a fixed overhead for the entry, map slot and list element.
func recBytes(r *agentRec) int64 {
	return int64(4*len(r.Tokens)+32*len(r.Hashes)+len(r.ID)+len(r.ModelTag)+len(r.Salt)) + 256
}

func newAgentTable(tenantOf func(string) string) agentTable {
	return agentTable{byID: map[string]*agentEntry{}, lru: list.New(), tenantOf: tenantOf, tenants: map[string]tenantUse{}}
}

// tenant is the tenant of agent id ("" for none).
func (t *agentTable) tenant(id string) string {
	if t.tenantOf == nil {
		return ""
	}
	return t.tenantOf(id)
}

// tenantUse is what tenant's records hold now (zero for the empty tenant).
func (t *agentTable) tenantUse(tenant string) tenantUse { return t.tenants[tenant] }

// account adds (sign 1) or removes (sign -1) rec from its tenant's use.
func (t *agentTable) account(rec *agentRec, sign int) {
	tn := t.tenant(rec.ID)
	if tn == "" {
		return
	}
	u := t.tenants[tn]
	u.agents += sign
	u.bytes += int64(sign) * recBytes(rec)
	if u.agents == 0 {
		delete(t.tenants, tn)
	} else {
		t.tenants[tn] = u
	}
}

func (t *agentTable) len() int { return len(t.byID) }

// get returns the agent's entry, nil if none.
func (t *agentTable) get(id string) *agentEntry { return t.byID[id] }

// add records a new agent as the most recently used.
func (t *agentTable) add(rec *agentRec, lastUsed time.Time) *agentEntry {
	e := &agentEntry{rec: rec, lastUsed: lastUsed}
	e.elem = t.lru.PushBack(e)
	t.byID[rec.ID] = e
	t.bytes += recBytes(rec)
	t.account(rec, 1)
	return e
}

// replace swaps e's record for rec (same id).
func (t *agentTable) replace(e *agentEntry, rec *agentRec) {
	t.bytes += recBytes(rec) - recBytes(e.rec)
	t.account(e.rec, -1)
	t.account(rec, 1)
	e.rec = rec
}

// touch marks an agent used at now.
func (t *agentTable) touch(e *agentEntry, now time.Time) {
	e.lastUsed = now
	t.lru.MoveToBack(e.elem)
}

func (t *agentTable) remove(e *agentEntry) {
	delete(t.byID, e.rec.ID)
	t.lru.Remove(e.elem)
	t.bytes -= recBytes(e.rec)
	t.account(e.rec, -1)
}

// all yields every agent in no particular order; the caller may remove the
// agent it is given.
func (t *agentTable) all() iter.Seq[*agentEntry] { return maps.Values(t.byID) }

// leastRecent yields the agents from least to most recently used; the caller
// must not change the table while it iterates.
func (t *agentTable) leastRecent() iter.Seq[*agentEntry] {
	return func(yield func(*agentEntry) bool) {
		for el := t.lru.Front(); el != nil; el = el.Next() {
			if !yield(el.Value.(*agentEntry)) {
				return
			}
		}
	}
}

// oldest is the least recently used agent, nil if none.
func (t *agentTable) oldest() *agentEntry { return t.oldestExcept("") }

// oldestExcept is the least recently used agent other than keep, nil if none.
func (t *agentTable) oldestExcept(keep string) *agentEntry {
	for e := range t.leastRecent() {
		if e.rec.ID != keep {
			return e
		}
	}
	return nil
}

// check verifies that map and list hold the same entries, that the byte and
// per-tenant sums are the records', and that every record names at least one
// block and one token.
func (t *agentTable) check() error {
	if t.lru.Len() != len(t.byID) {
		return fmt.Errorf("agent LRU has %d, map %d", t.lru.Len(), len(t.byID))
	}
	var bytes int64
	tenants := map[string]tenantUse{}
	for _, e := range t.byID {
		bytes += recBytes(e.rec)
		if tn := t.tenant(e.rec.ID); tn != "" {
			u := tenants[tn]
			u.agents++
			u.bytes += recBytes(e.rec)
			tenants[tn] = u
		}
	}
	if bytes != t.bytes {
		return fmt.Errorf("agent bytes %d, records say %d", t.bytes, bytes)
	}
	if !maps.Equal(tenants, t.tenants) {
		return fmt.Errorf("tenant use %v, records say %v", t.tenants, tenants)
	}
	for id, e := range t.byID {
		if e.rec.ID != id || e.elem == nil || e.elem.Value.(*agentEntry) != e {
			return fmt.Errorf("agent %q: bad entry", id)
		}
		if len(e.rec.Hashes) == 0 || len(e.rec.Tokens) == 0 {
			return fmt.Errorf("agent %q: %d hashes for %d tokens", id, len(e.rec.Hashes), len(e.rec.Tokens))
		}
	}
	return nil
}
