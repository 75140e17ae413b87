package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeysFileRoundTrip(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, KeyPrefix) || len(key) != len(KeyPrefix)+43 {
		t.Fatalf("key %q", key)
	}
	f := &File{
		Tenants: map[string]Quota{"acme": {MaxAgents: 10, MaxRequests: 2}},
		Keys:    []Key{{Name: "ci", Tenant: "acme", Role: RoleUser, SHA256: HashKey(key)}},
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), key) {
		t.Fatal("the keys file holds the key itself")
	}
	g, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := g.Index().Lookup(key)
	if err != nil || p.Tenant != "acme" || p.Role != RoleUser || p.KeyName != "ci" || p.Quota.MaxAgents != 10 {
		t.Fatalf("lookup: %+v, %v", p, err)
	}
	if _, err := g.Index().Lookup(key + "x"); err != ErrUnknownKey {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestKeysFileRefusals(t *testing.T) {
	h := HashKey("k")
	for name, f := range map[string]File{
		"bad tenant":     {Keys: []Key{{Name: "a", Tenant: "Acme", Role: RoleUser, SHA256: h}}},
		"bad role":       {Keys: []Key{{Name: "a", Tenant: "acme", Role: "root", SHA256: h}}},
		"bad hash":       {Keys: []Key{{Name: "a", Tenant: "acme", Role: RoleUser, SHA256: "abc"}}},
		"no name":        {Keys: []Key{{Tenant: "acme", Role: RoleUser, SHA256: h}}},
		"name twice":     {Keys: []Key{{Name: "a", Tenant: "acme", Role: RoleUser, SHA256: h}, {Name: "a", Tenant: "acme", Role: RoleUser, SHA256: HashKey("j")}}},
		"key twice":      {Keys: []Key{{Name: "a", Tenant: "acme", Role: RoleUser, SHA256: h}, {Name: "b", Tenant: "acme", Role: RoleUser, SHA256: h}}},
		"quota's tenant": {Tenants: map[string]Quota{"a/b": {}}},
	} {
		if err := f.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
