package auth

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestAuth is an authenticator over a keys file with one user key of
// tenant acme.
func newTestAuth(t *testing.T) (*Authenticator, string, string) {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.json")
	f := &File{Tenants: map[string]Quota{"acme": {MaxRequests: 3}}, Keys: []Key{{Name: "ci", Tenant: "acme", Role: RoleUser, SHA256: HashKey(key)}}}
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	a, err := New(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, key, path
}

func TestHTTPHeaders(t *testing.T) {
	a, key, _ := newTestAuth(t)
	want := Principal{Tenant: "acme", Role: RoleUser, KeyName: "ci", Quota: Quota{MaxRequests: 3}}
	for _, tc := range []struct {
		hdr  []string
		code codes.Code
		msg  string
	}{
		{[]string{"Authorization", "Bearer " + key}, codes.OK, ""},
		{[]string{"Authorization", "bearer  " + key + " "}, codes.OK, ""},
		{[]string{"X-Api-Key", key}, codes.OK, ""},
		{nil, codes.Unauthenticated, msgNoKeyHTTP},
		{[]string{"Authorization", "Bearer"}, codes.Unauthenticated, msgNotBearer},
		{[]string{"Authorization", "Basic " + key}, codes.Unauthenticated, msgNotBearer},
		{[]string{"Authorization", "Bearer sk-sem-wrong"}, codes.Unauthenticated, msgUnknown},
		{[]string{"X-Api-Key", "sk-sem-wrong"}, codes.Unauthenticated, msgUnknown},
	} {
		r := httptest.NewRequest("GET", "/v1/models", nil)
		if len(tc.hdr) == 2 {
			r.Header.Set(tc.hdr[0], tc.hdr[1])
		}
		ctx, err := a.HTTP(r)
		if st := status.Convert(err); st.Code() != tc.code || tc.msg != "" && st.Message() != tc.msg {
			t.Fatalf("%v: got %v, want %v %q", tc.hdr, err, tc.code, tc.msg)
		}
		if err == nil {
			if p, ok := FromContext(ctx); !ok || p != want {
				t.Fatalf("%v: principal %+v %v", tc.hdr, p, ok)
			}
		}
	}
}

func TestGRPCMetadataAndOpenMethods(t *testing.T) {
	a, key, _ := newTestAuth(t)
	in := func(kv ...string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
	}
	if _, err := a.GRPC(in(), "/semantic.scheduler.v1.SchedulerService/ListAgents"); status.Convert(err).Message() != msgNoKeyGRPC {
		t.Fatalf("no key: %v", err)
	}
	if _, err := a.GRPC(context.Background(), "/semantic.scheduler.v1.SchedulerService/ListAgents"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("no metadata: %v", err)
	}
	ctx, err := a.GRPC(in("authorization", "Bearer "+key), "/semantic.scheduler.v1.SchedulerService/Generate")
	if p, _ := FromContext(ctx); err != nil || p.Tenant != "acme" {
		t.Fatalf("good key: %+v %v", p, err)
	}
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
		if _, err := a.GRPC(in(), m); err != nil {
			t.Fatalf("%s without a key: %v", m, err)
		}
	}
}

func TestOpenWithoutKeysFile(t *testing.T) {
	a, err := New("", quiet)
	if err != nil {
		t.Fatal(err)
	}
	a.Watch() // nothing to watch
	defer a.Close()
	ctx, err := a.GRPC(context.Background(), "/semantic.scheduler.v1.SchedulerService/DeleteAgent")
	if p, ok := FromContext(ctx); err != nil || !ok || p != Open || p.Role != RoleAdmin || p.Tenant != "" {
		t.Fatalf("open: %+v %v %v", p, ok, err)
	}
	if !a.IsOpen() || a.Reload() != nil {
		t.Fatal("open authenticator")
	}
}

// Watch reloads on SIGHUP and Close stops its goroutine (TestMain checks
// that nothing is left).
func TestWatchReloadsOnSIGHUPAndStops(t *testing.T) {
	a, _, path := newTestAuth(t)
	a.Watch()
	a.Watch() // once
	key2, _ := NewKey()
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Keys = append(f.Keys, Key{Name: "second", Tenant: "beta", Role: RoleAdmin, SHA256: HashKey(key2)})
	if err := f.Write(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Len() != 2 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the keys")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p, err := a.Authenticate(key2); err != nil || p.Tenant != "beta" || p.Role != RoleAdmin {
		t.Fatalf("reloaded key: %+v %v", p, err)
	}
	a.Close()
	a.Close()
}
