package rpcstatus

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInvalidArgumentCarriesField(t *testing.T) {
	err := InvalidArgument("count", "must be in 1..%d", 8)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || FieldOf(err) != "count" || !strings.Contains(st.Message(), "count: must be in 1..8") {
		t.Fatalf("%v", st)
	}
}

func TestExhaustedCarriesQuotaFailure(t *testing.T) {
	st := status.Convert(Exhausted("pool/blocks", "asked %d, available %d", 9, 3))
	if st.Code() != codes.ResourceExhausted || len(st.Details()) != 1 {
		t.Fatalf("%v", st)
	}
	qf, ok := st.Details()[0].(*errdetails.QuotaFailure)
	if !ok || qf.GetViolations()[0].GetSubject() != "pool/blocks" {
		t.Fatalf("%v", st.Details())
	}
}

func TestTooLong(t *testing.T) {
	err := TooLong("messages", "%d bytes cannot fit", 9)
	if status.Code(err) != codes.InvalidArgument || FieldOf(err) != "messages" || !IsTooLong(err) {
		t.Fatalf("%v", status.Convert(err).Details())
	}
	if IsTooLong(InvalidArgument("messages", "bad")) || IsTooLong(nil) || IsTooLong(Exhausted("x", "y")) {
		t.Fatal("IsTooLong on other errors")
	}
	if SubjectOf(Exhausted("scheduler/queue", "full")) != "scheduler/queue" || SubjectOf(err) != "" {
		t.Fatal("SubjectOf")
	}
}

func TestAgentIDs(t *testing.T) {
	for _, ok := range []string{"a", "agent-1", "team.alpha:bot_7", strings.Repeat("x", 128)} {
		if CheckAgentID("agent_id", ok) != nil {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "has space", "slash/y", "ümlaut", strings.Repeat("x", 129), "new\nline"} {
		if err := CheckAgentID("agent_id", bad); FieldOf(err) != "agent_id" {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func FuzzAgentID(f *testing.F) {
	f.Add("agent-1")
	f.Add("")
	f.Fuzz(func(t *testing.T, id string) {
		ok := ValidAgentID(id)
		if ok && (len(id) == 0 || len(id) > MaxAgentIDLen) {
			t.Fatalf("%q accepted", id)
		}
		for _, r := range id {
			if ok && !(r == '.' || r == '_' || r == ':' || r == '-' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')) {
				t.Fatalf("%q accepted with %q", id, r)
			}
		}
	})
}
