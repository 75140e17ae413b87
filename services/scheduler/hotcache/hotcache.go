// Package hotcache is the scheduler's local tier: decoded KV blocks by
// content hash, least recently used first out, under a byte budget. An agent
// that comes back to the same scheduler attends over these blocks in place,
// with no transfer from its pool node.
//
// Blocks in the cache are immutable: the engine only writes positions at or
// past a sequence's length, and a cached block is only ever used for positions
// before it. Evicting a block a running sequence still uses is safe: the
// sequence keeps its pointer and the memory is reclaimed after it finishes.
package hotcache

import (
	"container/list"
	"sync"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

// Cache is an LRU of values of a fixed byte size each.
type Cache[V any] struct {
	mu        sync.Mutex
	budget    int64
	entrySize int64
	ll        *list.List // front = most recently used
	items     map[kvspec.Hash]*list.Element

	hits, misses, evictions uint64
}

type entry[V any] struct {
	key kvspec.Hash
	val V
}

// New returns a cache holding at most budget bytes of entries of entrySize
// bytes each. A budget below one entry disables the cache.
func New[V any](budget, entrySize int64) *Cache[V] {
	return &Cache[V]{budget: budget, entrySize: entrySize, ll: list.New(), items: map[kvspec.Hash]*list.Element{}}
}

// Get returns the value for h and marks it most recently used.
func (c *Cache[V]) Get(h kvspec.Hash) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[h]; ok {
		c.ll.MoveToFront(e)
		c.hits++
		return e.Value.(*entry[V]).val, true
	}
	c.misses++
	var zero V
	return zero, false
}

// Put stores v under h, evicting least recently used entries over budget.
func (c *Cache[V]) Put(h kvspec.Hash, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entrySize > c.budget {
		return
	}
	if e, ok := c.items[h]; ok {
		c.ll.MoveToFront(e)
		return
	}
	c.items[h] = c.ll.PushFront(&entry[V]{key: h, val: v})
	for int64(c.ll.Len())*c.entrySize > c.budget {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*entry[V]).key)
		c.evictions++
	}
}

// Remove drops h (used when a block proved bad).
func (c *Cache[V]) Remove(h kvspec.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[h]; ok {
		c.ll.Remove(e)
		delete(c.items, h)
	}
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	Entries                 int
	Bytes                   int64
	Hits, Misses, Evictions uint64
}

// Stats returns the current counters.
func (c *Cache[V]) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Entries: c.ll.Len(), Bytes: int64(c.ll.Len()) * c.entrySize, Hits: c.hits, Misses: c.misses, Evictions: c.evictions}
}
