package service

import (
	"strings"
	"testing"

	"github.com/semantic-kv/semantic/pkg/poolwire"
)

// The salt the pool sees: the request's own for the empty tenant (caches of
// a scheduler without keys stay warm), else a fixed-length digest that
// differs per tenant and per salt (tenant names hold no NUL, so
// tenant+"\x00"+salt is unambiguous).
func TestTenantSalt(t *testing.T) {
	if tenantSalt("", "") != "" || tenantSalt("", "x") != "x" {
		t.Fatal("the empty tenant's salt changed")
	}
	long := strings.Repeat("s", poolwire.MaxSaltLen)
	seen := map[string]string{}
	for _, tc := range [][2]string{{"a", ""}, {"b", ""}, {"a", "x"}, {"b", "x"}, {"a", long}, {"ab", ""}, {"a", "b"}, {"a", "\x00"}} {
		s := tenantSalt(tc[0], tc[1])
		if s != tenantSalt(tc[0], tc[1]) || !strings.HasPrefix(s, "t1:") || len(s) != 46 || len(s) > poolwire.MaxSaltLen {
			t.Fatalf("%q: %q", tc, s)
		}
		if prev, ok := seen[s]; ok {
			t.Fatalf("%q and %s share a salt", tc, prev)
		}
		seen[s] = strings.Join(tc[:], "|")
	}
}

func TestTenantRequests(t *testing.T) {
	var tr tenantRequests
	d1, ok1 := tr.acquire("a", 2)
	d2, ok2 := tr.acquire("a", 2)
	_, ok3 := tr.acquire("a", 2)
	_, okB := tr.acquire("b", 1)
	if !ok1 || !ok2 || ok3 || !okB {
		t.Fatal(ok1, ok2, ok3, okB)
	}
	d1()
	if _, ok := tr.acquire("a", 2); !ok {
		t.Fatal("slot not given back")
	}
	d2()
	if _, ok := tr.acquire("c", 0); !ok {
		t.Fatal("unbounded tenant refused")
	}
}
