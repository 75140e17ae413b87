package client

import (
	"context"
	"iter"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
)

// AgentOption selects another tenant's agents (admin keys only).
type AgentOption func(*agentOpts)

type agentOpts struct {
	tenant   string
	pageSize uint32
}

// InTenant names another tenant ("*" lists every tenant's agents); the
// server refuses it with PERMISSION_DENIED unless the key is an admin's.
func InTenant(tenant string) AgentOption { return func(o *agentOpts) { o.tenant = tenant } }

// PageSize sets how many agents Agents fetches per call (default 100).
func PageSize(n int) AgentOption { return func(o *agentOpts) { o.pageSize = uint32(n) } }

func agentOptions(opts []AgentOption) agentOpts {
	var o agentOpts
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Agent returns an agent's cached context (token ids, text, version, node).
// An agent with nothing cached is ErrNotFound.
func (c *Client) Agent(ctx context.Context, id string, opts ...AgentOption) (*Agent, error) {
	o := agentOptions(opts)
	resp, err := c.api.GetAgent(ctx, &schedulerv1.GetAgentRequest{AgentId: id, Tenant: o.tenant})
	if err != nil {
		return nil, wrap(err)
	}
	return resp.GetAgent(), nil
}

// Agents ranges over the caller's agents in agent id order, fetching pages
// as it goes; an error is yielded once and ends the sequence.
func (c *Client) Agents(ctx context.Context, opts ...AgentOption) iter.Seq2[*Agent, error] {
	o := agentOptions(opts)
	return func(yield func(*Agent, error) bool) {
		token := ""
		for {
			resp, err := c.api.ListAgents(ctx, &schedulerv1.ListAgentsRequest{PageSize: o.pageSize, PageToken: token, Tenant: o.tenant})
			if err != nil {
				yield(nil, wrap(err))
				return
			}
			for _, a := range resp.GetAgents() {
				if !yield(a, nil) {
					return
				}
			}
			if token = resp.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// DeleteAgent forgets an agent's cached context; deleted says whether there
// was one.
func (c *Client) DeleteAgent(ctx context.Context, id string, opts ...AgentOption) (deleted bool, err error) {
	o := agentOptions(opts)
	resp, err := c.api.DeleteAgent(ctx, &schedulerv1.DeleteAgentRequest{AgentId: id, Tenant: o.tenant})
	if err != nil {
		return false, wrap(err)
	}
	return resp.GetDeleted(), nil
}
