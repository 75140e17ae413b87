package hotcache

import (
	"sync"
	"testing"

	"github.com/semantic-kv/semantic/pkg/kvspec"
)

func key(i int) kvspec.Hash { return kvspec.ChainHash(kvspec.Hash{}, []uint32{uint32(i)}, "t", "") }

func TestLRUUnderBudget(t *testing.T) {
	c := New[int](3*100, 100)
	for i := 0; i < 3; i++ {
		c.Put(key(i), i)
	}
	if _, ok := c.Get(key(0)); !ok { // 0 becomes most recent
		t.Fatal("0 missing")
	}
	c.Put(key(3), 3) // evicts 1, the least recently used
	if _, ok := c.Get(key(1)); ok {
		t.Fatal("1 should be evicted")
	}
	for _, i := range []int{0, 2, 3} {
		if v, ok := c.Get(key(i)); !ok || v != i {
			t.Fatalf("%d: %v %v", i, v, ok)
		}
	}
	st := c.Stats()
	if st.Entries != 3 || st.Bytes != 300 || st.Evictions != 1 {
		t.Fatalf("stats %+v", st)
	}
	c.Remove(key(2))
	if _, ok := c.Get(key(2)); ok || c.Stats().Entries != 2 {
		t.Fatal("remove")
	}
}

func TestDisabledBelowOneEntry(t *testing.T) {
	c := New[int](50, 100)
	c.Put(key(1), 1)
	if _, ok := c.Get(key(1)); ok {
		t.Fatal("a cache smaller than one entry must hold nothing")
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New[int](10*8, 8)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Put(key(i%37), i)
				c.Get(key((i + g) % 37))
			}
		}(g)
	}
	wg.Wait()
	if st := c.Stats(); st.Entries > 10 || st.Bytes > 80 {
		t.Fatalf("over budget: %+v", st)
	}
}
