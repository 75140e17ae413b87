package service

import (
	"sort"
	"strconv"

	schedulerv1 "github.com/semantic-kv/semantic/pkg/api/semantic/scheduler/v1"
	"github.com/semantic-kv/semantic/pkg/rpcstatus"
)

func toInts(ids []uint32) []int {
	out := make([]int, len(ids))
	for i, v := range ids {
		out[i] = int(v)
	}
	return out
}

func toUint32s(ids []int) []uint32 {
	out := make([]uint32, len(ids))
	for i, v := range ids {
		out[i] = uint32(v)
	}
	return out
}

func sortAgents(a []*schedulerv1.AgentInfo) {
	sort.SliceStable(a, func(i, j int) bool {
		ti, tj := a[i].GetLastUsedTime().AsTime(), a[j].GetLastUsedTime().AsTime()
		if !ti.Equal(tj) {
			return ti.After(tj)
		}
		return a[i].GetAgentId() < a[j].GetAgentId()
	})
}

func parseOffset(tok string) (int, error) {
	if tok == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(tok)
	if err != nil || n < 0 {
		return 0, rpcstatus.InvalidArgument("page_token", "not a token from a previous response")
	}
	return n, nil
}

func formatOffset(n int) string { return strconv.Itoa(n) }
