package service

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/semantic-kv/semantic/pkg/rpcstatus"
	"github.com/semantic-kv/semantic/services/scheduler/batch"
	"github.com/semantic-kv/semantic/services/scheduler/poolnode"
)

// The one mapping of domain errors to statuses, wrapped or not; statuses
// (the service's refusals, a pool node's answers) pass unchanged.
func TestToStatus(t *testing.T) {
	refusal := rpcstatus.InvalidArgument("max_tokens", "bad")
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{refusal, codes.InvalidArgument},
		{status.Error(codes.ResourceExhausted, "pool says no"), codes.ResourceExhausted},
		{poolnode.ErrNoHealthyNode, codes.Unavailable},
		{fmt.Errorf("lookup: %w", poolnode.ErrNoHealthyNode), codes.Unavailable},
		{fmt.Errorf("%w: short block", poolnode.ErrDataLoss), codes.DataLoss},
		{batch.ErrClosed, codes.Unavailable},
		{fmt.Errorf("%w: boom", batch.ErrEngine), codes.Internal},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("waiting: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{errors.New("anything else"), codes.Internal},
	} {
		got := toStatus(c.err)
		if status.Code(got) != c.want {
			t.Errorf("toStatus(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if got := toStatus(refusal); rpcstatus.FieldOf(got) != "max_tokens" {
		t.Errorf("a refusal lost its field: %v", got)
	}
}
