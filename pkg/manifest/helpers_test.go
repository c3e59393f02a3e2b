package manifest

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func addrs(s *IPSet) []string {
	var out []string
	for a := range s.All() {
		out = append(out, a.String())
	}
	return out
}

func TestParseIPSet(t *testing.T) {
	s, err := ParseIPSet([]string{"10.0.0.5", "10.0.0.1 - 10.0.0.3", "10.0.0.4", "10.0.0.8/30", "10.0.0.2-10.0.0.2"})
	require.NoError(t, err)
	assert.Equal(t, "10.0.0.1-10.0.0.5, 10.0.0.8-10.0.0.11", s.String(), "adjacent and overlapping entries merge")
	assert.Equal(t, 9, s.Len())
	assert.Equal(t, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.8", "10.0.0.9", "10.0.0.10", "10.0.0.11"}, addrs(s))
	for ip, want := range map[string]bool{"10.0.0.0": false, "10.0.0.1": true, "10.0.0.5": true, "10.0.0.6": false, "10.0.0.11": true, "10.0.0.12": false, "::1": false} {
		assert.Equal(t, want, s.Contains(netip.MustParseAddr(ip)), ip)
	}

	for _, bad := range []string{"10.0.0", "10.0.0.9-10.0.0.1", "10.0.0.1-fe80::1", "10.0.0.0/40", "a-b"} {
		_, err := ParseIPSet([]string{bad})
		assert.Error(t, err, bad)
	}

	big, err := ParseIPSet([]string{"10.0.0.0/8"})
	require.NoError(t, err)
	assert.Equal(t, 1<<24, big.Len(), "a /8 is one range, not 16M entries")

	v6, err := ParseIPSet([]string{"fd00::10 - fd00::1f"})
	require.NoError(t, err)
	assert.Equal(t, 16, v6.Len())
	assert.True(t, v6.Contains(netip.MustParseAddr("fd00::1a")))
}

func TestIPSetSubtractIntersects(t *testing.T) {
	a, _ := ParseIPSet([]string{"10.0.0.0/28"})
	b, _ := ParseIPSet([]string{"10.0.0.0", "10.0.0.4-10.0.0.6", "10.0.0.15", "10.0.1.0/24"})
	d := a.Subtract(b)
	assert.Equal(t, "10.0.0.1-10.0.0.3, 10.0.0.7-10.0.0.14", d.String())
	assert.Equal(t, 11, d.Len())
	assert.True(t, a.Intersects(b))
	assert.False(t, d.Intersects(b))
	assert.Equal(t, 16, a.Len(), "Subtract does not change its receiver")
}

func TestSubnetIPs(t *testing.T) {
	s := Subnet{Range: "10.0.1.0/24", Gateway: "10.0.1.1", Reserved: []string{"10.0.1.2 - 10.0.1.9", "10.0.1.250-10.0.1.254"}, Static: []string{"10.0.1.10-10.0.1.19"}}
	p, err := s.IPs()
	require.NoError(t, err)
	assert.Equal(t, netip.MustParsePrefix("10.0.1.0/24"), p.Range)
	assert.Equal(t, "10.0.1.0-10.0.1.9, 10.0.1.250-10.0.1.255", p.Restricted.String(), "network, gateway, reserved, broadcast")
	assert.Equal(t, 10, p.Static.Len())
	assert.Equal(t, "10.0.1.20-10.0.1.249", p.Dynamic.String())
	assert.Equal(t, 230, p.Dynamic.Len())
	// 256 addresses = restricted 16 + static 10 + dynamic 230
	assert.Equal(t, 256, p.Restricted.Len()+p.Static.Len()+p.Dynamic.Len())

	v6, err := (&Subnet{Range: "fd00::/120", Gateway: "fd00::1"}).IPs()
	require.NoError(t, err)
	assert.Equal(t, "fd00::-fd00::1, fd00::ff", v6.Restricted.String(), "the last address is restricted for IPv6 too, as in the director")
	assert.Equal(t, 253, v6.Dynamic.Len())

	_, err = (&Subnet{Range: "((cidr))"}).IPs()
	assert.Error(t, err)
	assert.True(t, (&Subnet{Range: "((cidr))"}).HasVars())
	assert.True(t, (&Subnet{Range: "10.0.0.0/24", Static: []string{"((ip))"}}).HasVars())
	assert.False(t, s.HasVars())
}

func TestCountOrPercent(t *testing.T) {
	for _, tc := range []struct {
		in                  string
		size, canaries, mif int
	}{
		{"1", 5, 1, 1},
		{"10", 5, 5, 10},  // canaries capped at size; an integer max_in_flight is not
		{"0", 5, 0, 1},    // max_in_flight never below 1
		{"25%", 10, 2, 2}, // 250/100: the director floors (integer division)
		{"25%", 2, 0, 1},  // 0.5 -> 0, max_in_flight floored at 1
		{"33%", 10, 3, 3}, // 3.3 -> 3
		{"99%", 10, 9, 9}, // 9.9 -> 9
		{"150%", 4, 4, 4}, // a percentage is capped at the size
		{"0%", 4, 0, 1},
		{"100%", 7, 7, 7},
		{" 50 % ", 4, 2, 2},
	} {
		c, err := ParseCountOrPercent(tc.in)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.canaries, c.Canaries(tc.size), "canaries %q of %d", tc.in, tc.size)
		assert.Equal(t, tc.mif, c.MaxInFlight(tc.size), "max_in_flight %q of %d", tc.in, tc.size)
	}
	for _, bad := range []string{"", "x", "-1", "5%%", "1.5"} {
		_, err := ParseCountOrPercent(bad)
		assert.Error(t, err, bad)
	}
}

func TestWatchTime(t *testing.T) {
	for in, want := range map[string]WatchTime{
		"30000":            {30000, 30000},
		"1000-30000":       {1000, 30000},
		" 5000 - 1200000 ": {5000, 1200000},
	} {
		w, err := ParseWatchTime(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, w, in)
	}
	for _, bad := range []string{"", "abc", "30000-1000", "-5", "1000-", "1.5-2"} {
		_, err := ParseWatchTime(bad)
		assert.Error(t, err, bad)
	}
	w, _ := ParseWatchTime("1000-30000")
	assert.Equal(t, time.Second, w.MinDuration())
	assert.Equal(t, 30*time.Second, w.MaxDuration())
	assert.Equal(t, "1000-30000", w.String())
	assert.Equal(t, 29*time.Second/9, w.PollInterval())
	sched := w.Schedule()
	require.Len(t, sched, 10, "min, then 9 steps")
	assert.Equal(t, time.Second, sched[0])
	var total time.Duration
	for _, d := range sched {
		total += d
	}
	assert.InDelta(t, float64(30*time.Second), float64(total), float64(time.Millisecond))
	w, _ = ParseWatchTime("5000-1200000")
	sched = w.Schedule()
	assert.Equal(t, 5*time.Second, sched[0])
	assert.Len(t, sched, 1+1195000/15000, "15 s steps: floor(1195 s / 15 s) = 79")
	assert.Equal(t, 15*time.Second, sched[1])
	w, _ = ParseWatchTime("3000")
	assert.Equal(t, []time.Duration{3 * time.Second}, w.Schedule(), "a single number: wait, then check once")
	w, _ = ParseWatchTime("5000-1200000")
	assert.Equal(t, 15*time.Second, w.PollInterval(), "clamped to 15 s")
	w, _ = ParseWatchTime("3000")
	assert.Equal(t, time.Second, w.PollInterval(), "clamped to 1 s")
}

func TestAddonPlacement(t *testing.T) {
	const rc = `releases: [{name: r, version: "1"}]
addons:
- name: everywhere
  jobs: [{name: a, release: r}]
- name: jammy-services
  jobs: [{name: a, release: r}]
  include:
    stemcell: [{os: ubuntu-jammy}, {os: ubuntu-noble}]
    lifecycle: service
- name: cf-not-diego
  jobs: [{name: a, release: r}]
  include:
    deployments: [cf]
  exclude:
    jobs: [{name: rep, release: diego}]
- name: by-group-and-network
  jobs: [{name: a, release: r}]
  include:
    instance_groups: [router, api]
    networks: [public]
- name: team
  jobs: [{name: a, release: r}]
  include:
    teams: [ops]
  exclude: {}
`
	c, _, err := ParseRuntimeConfig("runtime.yml", []byte(rc))
	require.NoError(t, err)
	require.NoError(t, c.Validate())

	router := Placement{Deployment: "cf", InstanceGroup: "router", StemcellOS: "ubuntu-jammy", Networks: []string{"default", "public"},
		Jobs: []JobRef{{Name: "gorouter", Release: "routing"}}, Teams: []string{"ops", "dev"}}
	cell := Placement{Deployment: "cf", InstanceGroup: "diego-cell", StemcellOS: "ubuntu-jammy", Networks: []string{"default"},
		Jobs: []JobRef{{Name: "rep", Release: "diego"}, {Name: "garden", Release: "garden-runc"}}}
	errand := Placement{Deployment: "cf", InstanceGroup: "smoke-tests", StemcellOS: "ubuntu-noble", Lifecycle: LifecycleErrand}
	other := Placement{Deployment: "k8s", InstanceGroup: "api", StemcellOS: "windows2019", Networks: []string{"public"}}

	applied := func(p Placement) []string {
		var out []string
		for i := range c.Addons {
			if c.Addons[i].AppliesTo(p) {
				out = append(out, c.Addons[i].Name)
			}
		}
		return out
	}
	assert.Equal(t, []string{"everywhere", "jammy-services", "cf-not-diego", "by-group-and-network", "team"}, applied(router))
	assert.Equal(t, []string{"everywhere", "jammy-services"}, applied(cell), "rep from diego excludes cf-not-diego")
	assert.Equal(t, []string{"everywhere", "cf-not-diego"}, applied(errand), "errands are not services")
	assert.Equal(t, []string{"everywhere", "by-group-and-network"}, applied(other))

	// In a deployment manifest the deployments rule is ignored.
	assert.True(t, c.Addons[2].AppliesToInDeployment(other))
	assert.False(t, c.Addons[2].AppliesTo(other))

	m, _, err := ParseManifest("demo.yml", []byte(baseManifest))
	require.NoError(t, err)
	p := m.PlacementOf(&m.InstanceGroups[1], nil)
	assert.Equal(t, "demo", p.Deployment)
	assert.Equal(t, "ubuntu-jammy", p.StemcellOS)
	assert.Equal(t, []string{"default", "public"}, p.Networks)
	assert.True(t, slices.ContainsFunc(p.Jobs, func(j JobRef) bool { return j.Name == "gorouter" && j.Release == "routing" }))
}
