package poolclient

import (
	"fmt"
	"sort"
	"testing"
)

// order is Cluster.Order without connections: node keys sorted by score.
func order(agent string, keys []string) []string {
	out := append([]string(nil), keys...)
	sort.SliceStable(out, func(i, j int) bool { return rendezvousScore(agent, out[i]) > rendezvousScore(agent, out[j]) })
	return out
}

func TestRendezvousSpreadsAndMovesOnlyTheRemovedShare(t *testing.T) {
	nodes := []string{"pool-a", "pool-b", "pool-c"}
	const agents = 3000
	home := map[string]string{}
	count := map[string]int{}
	for i := 0; i < agents; i++ {
		a := fmt.Sprintf("agent-%d", i)
		home[a] = order(a, nodes)[0]
		count[home[a]]++
	}
	for _, n := range nodes {
		if c := count[n]; c < agents/3*8/10 || c > agents/3*12/10 {
			t.Fatalf("node %s is home of %d of %d agents: not spread", n, c, agents)
		}
	}
	// Remove pool-b: only its agents move, each to its second choice.
	left := []string{"pool-a", "pool-c"}
	for a, h := range home {
		nh := order(a, left)[0]
		if h != "pool-b" && nh != h {
			t.Fatalf("agent %s moved from %s to %s though its home stayed", a, h, nh)
		}
		if h == "pool-b" && nh != order(a, nodes)[1] {
			t.Fatalf("agent %s did not move to its second choice", a)
		}
	}
	// Add pool-d: agents move only to pool-d.
	more := append(nodes, "pool-d")
	for a, h := range home {
		if nh := order(a, more)[0]; nh != h && nh != "pool-d" {
			t.Fatalf("agent %s moved from %s to %s on adding pool-d", a, h, nh)
		}
	}
}

// Issue #13, defect 6: homes are hashed over node ids only. A node whose id
// is not known yet (never answered) goes last and leaves the order of the
// others unchanged; once its id is learned it takes the place its id gives
// it — the same on every scheduler, whatever address each reached it by.
func TestOrderIgnoresAddressesAndUnknownNodes(t *testing.T) {
	mk := func(addr, id string) *Node {
		n := &Node{Addr: addr}
		if id != "" {
			n.nodeID.Store(&id)
		}
		return n
	}
	ids := func(nodes []*Node) []string {
		var out []string
		for _, n := range nodes {
			out = append(out, n.Name())
		}
		return out
	}
	for a := range 200 {
		agent := fmt.Sprintf("agent-%d", a)
		all := []*Node{mk("10.0.0.1:50061", "pool-a"), mk("10.0.0.2:50061", "pool-b"), mk("10.0.0.3:50061", "pool-c")}
		want := order(agent, []string{"pool-a", "pool-b", "pool-c"})
		if got := ids(orderNodes(agent, all)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: order %v, want %v", agent, got, want)
		}
		// Another scheduler reaches the same nodes by other addresses.
		other := []*Node{mk("pool-c.svc:50061", "pool-c"), mk("pool-a.svc:50061", "pool-a"), mk("pool-b.svc:50061", "pool-b")}
		if got := ids(orderNodes(agent, other)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: by other addresses %v, want %v", agent, got, want)
		}
		// pool-b has not answered this scheduler yet: the others keep their
		// relative order, pool-b's address comes last.
		partial := []*Node{all[0], mk("10.0.0.2:50061", ""), all[2]}
		got := ids(orderNodes(agent, partial))
		var known []string
		for _, id := range want {
			if id != "pool-b" {
				known = append(known, id)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(append(known, "10.0.0.2:50061")) {
			t.Fatalf("%s: with pool-b unknown %v, want %v then its address", agent, got, known)
		}
	}
}
