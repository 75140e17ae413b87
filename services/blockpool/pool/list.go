package pool

import "fmt"

// links are the intrusive list pointers of a slot in one list; -1 is nil.
// Intrusive index-based lists keep the LRU O(1) (unlink on a hit, like vLLM's
// free-block queue) without an allocation per node.
type links struct{ prev, next int32 }

// ilist is a doubly linked list of slot ids; front is least recently used.
type ilist struct {
	head, tail int32
	n          int
	get        func(id int32) *links
}

func newList(get func(int32) *links) ilist { return ilist{head: -1, tail: -1, get: get} }

func (l *ilist) pushBack(id int32) {
	ln := l.get(id)
	ln.prev, ln.next = l.tail, -1
	if l.tail >= 0 {
		l.get(l.tail).next = id
	} else {
		l.head = id
	}
	l.tail = id
	l.n++
}

func (l *ilist) remove(id int32) {
	ln := l.get(id)
	if ln.prev >= 0 {
		l.get(ln.prev).next = ln.next
	} else {
		l.head = ln.next
	}
	if ln.next >= 0 {
		l.get(ln.next).prev = ln.prev
	} else {
		l.tail = ln.prev
	}
	ln.prev, ln.next = -1, -1
	l.n--
}

func (l *ilist) moveToBack(id int32) {
	if l.tail == id {
		return
	}
	l.remove(id)
	l.pushBack(id)
}

// checkList verifies that l links exactly want members, both ways.
func checkList(l *ilist, want int, member func(int32) bool) error {
	n := 0
	prev := int32(-1)
	for id := l.head; id >= 0; id = l.get(id).next {
		if l.get(id).prev != prev || !member(id) {
			return fmt.Errorf("broken at %d", id)
		}
		prev = id
		if n++; n > want {
			return fmt.Errorf("longer than %d", want)
		}
	}
	if n != want || l.n != want || l.tail != prev {
		return fmt.Errorf("length %d, counter %d, members %d", n, l.n, want)
	}
	return nil
}
