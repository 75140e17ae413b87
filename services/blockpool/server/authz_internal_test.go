package server

import (
	"testing"

	blockpoolv1 "github.com/semantic-kv/semantic/pkg/api/semantic/blockpool/v1"
)

// Every method of the service has a rule: a method added to the proto is
// refused to everyone until someone decides who may call it, and this test
// says so.
func TestEveryMethodHasARule(t *testing.T) {
	d := blockpoolv1.BlockPoolService_ServiceDesc
	var names []string
	for _, m := range d.Methods {
		names = append(names, m.MethodName)
	}
	for _, s := range d.Streams {
		names = append(names, s.StreamName)
	}
	for _, n := range names {
		if len(rules[n]) == 0 {
			t.Errorf("method %s has no authorization rule (server/authz.go)", n)
		}
	}
	if len(rules) != len(names) {
		t.Errorf("%d rules for %d methods", len(rules), len(names))
	}
}
