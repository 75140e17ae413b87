package pool

import (
	"container/heap"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"iter"
	"maps"
	"time"
)

// lease is an active lease.
type lease struct {
	id      uint64
	holder  string
	agent   string
	ttl     time.Duration
	expire  time.Time
	slots   []int32 // hits first, then fresh blocks
	hits    int
	heapIdx int
}

func (l *lease) holds(id int32) bool {
	for _, x := range l.slots {
		if x == id {
			return true
		}
	}
	return false
}

// leaseTable is the active leases, like etcd's lessor: a map from id to lease
// plus a min-heap on expiry (a lease keeps its heap index, so a renewal is one
// heap.Fix). Lease ids are 64 random bits from crypto/rand (never 0, unique
// among live leases): knowing one's own lease id and the public epoch tells
// nothing about another holder's. A lease removed from the table is gone for
// good (a random id repeats within an epoch with probability ~2^-64 per pair),
// and every write looks its lease up. Guarded by the pool lock.
type leaseTable struct {
	byID   map[uint64]*lease
	expiry leaseHeap
	issued uint64 // leases added, for tests and checks
	// randID draws an id; crypto/rand unless a test replaces it.
	randID func() uint64
}

func newLeaseTable() leaseTable { return leaseTable{byID: map[uint64]*lease{}, randID: cryptoID} }

// cryptoID is 64 bits from crypto/rand (which does not fail on supported
// platforms: rand.Read panics rather than return short).
func cryptoID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func (t *leaseTable) len() int { return len(t.byID) }

func (t *leaseTable) get(id uint64) (*lease, bool) {
	l, ok := t.byID[id]
	return l, ok
}

// all yields every active lease in no particular order.
func (t *leaseTable) all() iter.Seq[*lease] { return maps.Values(t.byID) }

// add gives l a fresh random id and tracks it until remove; l.expire must be set.
func (t *leaseTable) add(l *lease) {
	for {
		l.id = t.randID()
		if _, dup := t.byID[l.id]; l.id != 0 && !dup {
			break
		}
	}
	t.issued++
	t.byID[l.id] = l
	heap.Push(&t.expiry, l)
}

// renew moves l's expiry to now plus its TTL.
func (t *leaseTable) renew(l *lease, now time.Time) {
	l.expire = now.Add(l.ttl)
	heap.Fix(&t.expiry, l.heapIdx)
}

func (t *leaseTable) remove(l *lease) {
	delete(t.byID, l.id)
	heap.Remove(&t.expiry, l.heapIdx)
}

// nextExpired returns the lease that expires first if its expiry has passed
// at now, else nil.
func (t *leaseTable) nextExpired(now time.Time) *lease {
	if len(t.expiry) == 0 || now.Before(t.expiry[0].expire) {
		return nil
	}
	return t.expiry[0]
}

// check verifies that map and heap hold the same leases, each at its heap
// index, in heap order, with nonzero ids.
func (t *leaseTable) check() error {
	for id, l := range t.byID {
		if l.id != id || id == 0 || l.heapIdx < 0 || l.heapIdx >= len(t.expiry) || t.expiry[l.heapIdx] != l {
			return fmt.Errorf("lease %d: bad map/heap entry", id)
		}
	}
	if len(t.expiry) != len(t.byID) {
		return fmt.Errorf("heap has %d leases, map %d", len(t.expiry), len(t.byID))
	}
	for i := 1; i < len(t.expiry); i++ {
		if t.expiry.Less(i, (i-1)/2) {
			return fmt.Errorf("expiry heap order broken at %d", i)
		}
	}
	return nil
}

type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].expire.Before(h[j].expire) }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *leaseHeap) Push(x any) { l := x.(*lease); l.heapIdx = len(*h); *h = append(*h, l) }
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.heapIdx = -1
	return l
}
