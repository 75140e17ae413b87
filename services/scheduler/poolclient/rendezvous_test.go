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
