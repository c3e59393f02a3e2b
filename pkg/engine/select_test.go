package engine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/plan"
)

func TestSelectPrecedence(t *testing.T) {
	web0 := &plan.Instance{Group: "web", Index: 0, UUID: "9aa1c0de-0000-4000-8000-000000000000"}
	web1 := &plan.Instance{Group: "web", Index: 1, UUID: "0bb2c0de-0000-4000-8000-000000000000"} // UUID starts with "0"
	web2 := &plan.Instance{Group: "web", Index: 2, UUID: "0bb3c0de-0000-4000-8000-000000000000"}
	gone := &plan.Instance{Group: "web", Index: 3, UUID: "dddd0000-0000-4000-8000-000000000000", Action: plan.ActionDelete}
	db0 := &plan.Instance{Group: "db", Index: 0, UUID: "eeee0000-0000-4000-8000-000000000000"}
	p := &plan.Plan{Deployment: "d", Groups: []*plan.Group{
		{Name: "web", Manifest: &manifest.InstanceGroup{}, Instances: []*plan.Instance{web0, web1, web2, gone}},
		{Name: "db", Manifest: &manifest.InstanceGroup{}, Instances: []*plan.Instance{db0}},
	}}
	tests := []struct {
		selector string
		want     []*plan.Instance
		err      string
	}{
		{"", []*plan.Instance{web0, web1, web2, db0}, ""},
		{"web", []*plan.Instance{web0, web1, web2}, ""},
		{"web/0", []*plan.Instance{web0}, ""},             // the index, not web1's UUID prefix "0"
		{"web/" + web1.UUID, []*plan.Instance{web1}, ""},  // a whole UUID
		{"web/0bb2", []*plan.Instance{web1}, ""},          // a unique prefix of 4+
		{"web/0bb", nil, `no instance matches "web/0bb"`}, // too short to be a prefix
		{"web/3", nil, `no instance matches "web/3"`},     // being deleted
		{"db/eeee", []*plan.Instance{db0}, ""},
		{"nope", nil, `no instance matches "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.selector, func(t *testing.T) {
			got, err := Select(p, tt.selector)
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	// Two instances sharing a prefix are refused, naming both.
	web2.UUID = "0bb2ffff-0000-4000-8000-000000000000"
	_, err := Select(p, "web/0bb2")
	assert.ErrorContains(t, err, "ambiguous")
	assert.ErrorContains(t, err, web1.UUID)
	assert.ErrorContains(t, err, web2.UUID)
}
