// Package auth authenticates the scheduler's callers: API keys, each mapped to
// a tenant and a role, read from a keys file that stores only their hashes.
//
// The keys file (--auth-keys) is JSON:
//
//	{
//	  "tenants": {"acme": {"max_agents": 1000, "max_agent_bytes": 1073741824, "max_requests": 16}},
//	  "keys": [
//	    {"name": "acme-ci", "tenant": "acme", "role": "user",  "sha256": "<64 hex digits>"},
//	    {"name": "ops",     "tenant": "ops",  "role": "admin", "sha256": "<64 hex digits>"}
//	  ]
//	}
//
// A key is "sk-sem-" followed by 43 base64url characters (32 random bytes),
// so a plain SHA-256 is the right hash: there is nothing to brute-force that
// a slow hash would protect (slow hashes are for low-entropy passwords).
// `semantic-auth key` makes a key, prints it once and adds its hash here.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/semantic-kv/semantic/pkg/poolwire"
)

// KeyPrefix starts every API key (so that scanners and people can tell one).
const KeyPrefix = "sk-sem-"

// Role is what a key may do.
type Role string

// Roles. A user works with its own tenant's agents; an admin may also read
// and delete other tenants' agents (the tenant field of the agent calls).
const (
	RoleUser  Role = "user"
	RoleAdmin Role = "admin"
)

// Quota bounds one tenant. Zero fields are unbounded.
type Quota struct {
	// MaxAgents and MaxAgentBytes bound the tenant's agent records on each
	// pool node; beyond them the tenant's own least recently used idle
	// agents are dropped (never another tenant's).
	MaxAgents     uint32 `json:"max_agents,omitempty"`
	MaxAgentBytes uint64 `json:"max_agent_bytes,omitempty"`
	// MaxRequests bounds the tenant's Generate requests in flight on one
	// scheduler; more get RESOURCE_EXHAUSTED (scheduler/tenant-requests).
	MaxRequests int `json:"max_requests,omitempty"`
}

// Key is one API key as the file stores it: its hash, never the key.
type Key struct {
	Name   string `json:"name"`
	Tenant string `json:"tenant"`
	Role   Role   `json:"role"`
	SHA256 string `json:"sha256"`
}

// File is the keys file.
type File struct {
	Tenants map[string]Quota `json:"tenants,omitempty"`
	Keys    []Key            `json:"keys"`
}

// Principal is an authenticated caller.
type Principal struct {
	Tenant  string
	Role    Role
	KeyName string
	Quota   Quota
}

// NewKey returns a fresh random API key.
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashKey is the hash the keys file stores for key: SHA-256, hex.
func HashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// ReadFile reads and validates a keys file.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &f, nil
}

// Validate checks every key and tenant: names present and unique, tenants
// valid (poolwire.ValidTenant), roles known, hashes 64 hex digits and unique.
func (f *File) Validate() error {
	for t := range f.Tenants {
		if !poolwire.ValidTenant(t) {
			return fmt.Errorf("tenants: %q is not a tenant name ([a-z0-9][a-z0-9_-]{0,62})", t)
		}
	}
	names, hashes := map[string]bool{}, map[string]bool{}
	for i, k := range f.Keys {
		switch {
		case k.Name == "" || len(k.Name) > 128:
			return fmt.Errorf("keys[%d].name: must be 1..128 bytes", i)
		case names[k.Name]:
			return fmt.Errorf("keys[%d].name: %q is used twice", i, k.Name)
		case !poolwire.ValidTenant(k.Tenant):
			return fmt.Errorf("keys[%d].tenant: %q is not a tenant name ([a-z0-9][a-z0-9_-]{0,62})", i, k.Tenant)
		case k.Role != RoleUser && k.Role != RoleAdmin:
			return fmt.Errorf("keys[%d].role: must be %q or %q, got %q", i, RoleUser, RoleAdmin, k.Role)
		}
		if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("keys[%d].sha256: must be 64 hex digits (the SHA-256 of the key)", i)
		}
		if hashes[k.SHA256] {
			return fmt.Errorf("keys[%d].sha256: the same key is listed twice", i)
		}
		names[k.Name], hashes[k.SHA256] = true, true
	}
	return nil
}

// Write stores the file at path atomically (a temporary file renamed over
// it), readable by its owner only.
func (f *File) Write(path string) error {
	if err := f.Validate(); err != nil {
		return err
	}
	sort.SliceStable(f.Keys, func(i, j int) bool { return f.Keys[i].Name < f.Keys[j].Name })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keys-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(append(b, '\n'))
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Keys is an immutable set of keys to authenticate against.
type Keys struct {
	byHash map[string]Principal
}

// Index indexes the file's keys by hash.
func (f *File) Index() *Keys {
	k := &Keys{byHash: make(map[string]Principal, len(f.Keys))}
	for _, key := range f.Keys {
		k.byHash[key.SHA256] = Principal{Tenant: key.Tenant, Role: key.Role, KeyName: key.Name, Quota: f.Tenants[key.Tenant]}
	}
	return k
}

// Len is the number of keys.
func (k *Keys) Len() int { return len(k.byHash) }

// ErrUnknownKey is Lookup's error for a key that is not in the set.
var ErrUnknownKey = errors.New("unknown API key")

// Lookup authenticates key. The map is indexed by the key's hash, so the
// lookup's timing depends on the hash, never on how much of a real key a
// guess shares.
func (k *Keys) Lookup(key string) (Principal, error) {
	p, ok := k.byHash[HashKey(key)]
	if !ok {
		return Principal{}, ErrUnknownKey
	}
	return p, nil
}
