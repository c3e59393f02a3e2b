package manifest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const baseCloud = `azs:
- name: z1
- name: z2
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.1.0/24
    gateway: 10.0.1.1
    az: z1
    reserved: [10.0.1.2 - 10.0.1.9]
    static: [10.0.1.10 - 10.0.1.20]
  - range: 10.0.2.0/24
    gateway: 10.0.2.1
    azs: [z2]
    reserved: [10.0.2.2-10.0.2.9]
    static: [10.0.2.10-10.0.2.20]
- name: backend
  subnets:
  - range: 10.0.9.0/24
    gateway: 10.0.9.1
    azs: [z1, z2]
- name: public
  type: vip
- name: dhcp
  type: dynamic
  subnets:
  - az: z1
  - az: z2
vm_types:
- name: small
  cloud_properties: {instance_type: m1.small}
- name: large
vm_extensions:
- name: lb
disk_types:
- name: 10GB
  disk_size: 10240
compilation:
  workers: 2
  az: z1
  network: default
  vm_type: large
`

const baseManifest = `name: demo
releases:
- name: nats
  version: "1.0"
- name: routing
  version: latest
stemcells:
- alias: default
  os: ubuntu-jammy
  version: latest
update:
  canaries: 1
  max_in_flight: 25%
  canary_watch_time: 1000-30000
  update_watch_time: 5000
  serial: false
instance_groups:
- name: nats
  azs: [z1, z2]
  instances: 2
  vm_type: small
  stemcell: default
  persistent_disk_type: 10GB
  networks:
  - name: default
    static_ips: [10.0.1.10, 10.0.2.10]
  jobs:
  - name: nats
    release: nats
- name: router
  azs: [z1]
  instances: 1
  vm_type: large
  vm_extensions: [lb]
  stemcell: default
  networks:
  - name: default
  - name: public
    static_ips: [203.0.113.5]
  jobs:
  - name: gorouter
    release: routing
- name: smoke-tests
  lifecycle: errand
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: smoke, release: routing}]
`

// edit applies text replacements, failing the test when one does not apply.
func edit(t *testing.T, doc string, pairs ...string) string {
	t.Helper()
	require.Zero(t, len(pairs)%2)
	for i := 0; i < len(pairs); i += 2 {
		require.Contains(t, doc, pairs[i], "replacement %d does not apply", i/2)
		doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
	}
	return doc
}

func lineIn(t *testing.T, doc, needle string) int {
	t.Helper()
	i := strings.Index(doc, needle)
	require.GreaterOrEqual(t, i, 0, "%q not in document", needle)
	return strings.Count(doc[:i], "\n") + 1
}

func check(t *testing.T, manifest, cloud string) error {
	t.Helper()
	m, _, err := ParseManifest("demo.yml", []byte(manifest))
	require.NoError(t, err, "parse manifest")
	cc, _, err := ParseCloudConfig("cloud.yml", []byte(cloud))
	require.NoError(t, err, "parse cloud-config")
	return Configs{Manifest: m, Cloud: cc}.Validate()
}

func TestBaseDocumentsAreValid(t *testing.T) {
	require.NoError(t, check(t, baseManifest, baseCloud))
}

// TestManifestProblems: each broken manifest gives exactly the expected
// problems, with file, line (of the text named by at) and path.
func TestManifestProblems(t *testing.T) {
	type want struct {
		at   string // text whose line the problem must point at
		path string
		msg  string
	}
	for _, tc := range []struct {
		name  string
		edits []string
		want  []want
	}{
		{"vm_type not in cloud-config", []string{"vm_type: large\n  vm_extensions", "vm_type: tiny\n  vm_extensions"},
			[]want{{"vm_type: tiny", "instance_groups[1] (router).vm_type", `"tiny" is not defined in the cloud-config's vm_types (defined: large, small)`}}},
		{"vm_extension not in cloud-config", []string{"vm_extensions: [lb]", "vm_extensions: [lb, elb]"},
			[]want{{"vm_extensions: [lb, elb]", "instance_groups[1] (router).vm_extensions[1]", `"elb" is not defined`}}},
		{"disk_type not in cloud-config", []string{"persistent_disk_type: 10GB", "persistent_disk_type: 1TB"},
			[]want{{"persistent_disk_type: 1TB", "instance_groups[0] (nats).persistent_disk_type", `"1TB" is not defined in the cloud-config's disk_types (defined: 10GB)`}}},
		{"network not in cloud-config", []string{"networks: [{name: default}]", "networks: [{name: private}]"},
			[]want{{"networks: [{name: private}]", "instance_groups[2] (smoke-tests).networks[0] (private).name", `"private" is not defined in the cloud-config's networks`}}},
		{"az not in cloud-config", []string{"azs: [z1]\n  instances: 1\n  vm_type: large", "azs: [z1, z9]\n  instances: 1\n  vm_type: large"},
			[]want{
				{"azs: [z1, z9]", "instance_groups[1] (router).azs[1]", `az "z9" is not defined in the cloud-config (defined: z1, z2)`},
				{"- name: default\n  - name: public", "instance_groups[1] (router).networks[0] (default).name", `network "default" has no subnet in az "z9"`},
			}},
		{"stemcell alias not defined", []string{"vm_type: small\n  stemcell: default\n  networks: [", "vm_type: small\n  stemcell: jammy\n  networks: ["},
			[]want{{"stemcell: jammy", "instance_groups[2] (smoke-tests).stemcell", `stemcell alias "jammy" is not defined in stemcells (defined: default)`}}},
		{"release not in releases", []string{"release: nats\n", "release: nats-release\n"},
			[]want{{"release: nats-release", "instance_groups[0] (nats).jobs[0] (nats).release", `release "nats-release" is not in the manifest's releases (defined: nats, routing)`}}},
		{"static IP outside every subnet", []string{"[10.0.1.10, 10.0.2.10]", "[10.0.1.10, 10.0.3.10]"},
			[]want{{"static_ips: [10.0.1.10, 10.0.3.10]", "instance_groups[0] (nats).networks[0] (default).static_ips[1]", `10.0.3.10 is not inside any subnet of network "default" (10.0.1.0/24, 10.0.2.0/24)`}}},
		{"static IP reserved", []string{"[10.0.1.10, 10.0.2.10]", "[10.0.1.5, 10.0.2.10]"},
			[]want{{"static_ips: [10.0.1.5", "instance_groups[0] (nats).networks[0] (default).static_ips[0]", `10.0.1.5 is reserved in the subnet 10.0.1.0/24 of network "default" (reserved: 10.0.1.2-10.0.1.9)`}}},
		{"static IP is the gateway", []string{"[10.0.1.10, 10.0.2.10]", "[10.0.1.1, 10.0.2.10]"},
			[]want{{"static_ips: [10.0.1.1,", "instance_groups[0] (nats).networks[0] (default).static_ips[0]", `10.0.1.1 is the network, broadcast or gateway address`}}},
		{"static IP not in the static range", []string{"[10.0.1.10, 10.0.2.10]", "[10.0.1.50, 10.0.2.10]"},
			[]want{{"static_ips: [10.0.1.50", "instance_groups[0] (nats).networks[0] (default).static_ips[0]", `10.0.1.50 is not in the static IPs of the subnet 10.0.1.0/24 of network "default" (static: 10.0.1.10-10.0.1.20)`}}},
		{"static IP in a subnet of another az", []string{"azs: [z1, z2]\n  instances: 2", "azs: [z1]\n  instances: 2"},
			[]want{{"static_ips: [10.0.1.10, 10.0.2.10]", "instance_groups[0] (nats).networks[0] (default).static_ips[1]", `10.0.2.10 is in the subnet 10.0.2.0/24 of network "default", which serves azs z2, none of the group's azs (z1)`}}},
		{"two groups claim one static IP", []string{"  - name: default\n  - name: public", "  - name: default\n    default: [dns, gateway]\n    static_ips: [10.0.2.10]\n  - name: public", "azs: [z1]\n  instances: 1\n  vm_type: large", "azs: [z2]\n  instances: 1\n  vm_type: large"},
			[]want{{"static_ips: [10.0.2.10]", "instance_groups[1] (router).networks[0] (default).static_ips[0]", `10.0.2.10 is also a static IP of instance group "nats" (network default, line 26)`}}},
		{"instances and static IPs disagree", []string{"instances: 2", "instances: 3"},
			[]want{{"static_ips: [10.0.1.10, 10.0.2.10]", "instance_groups[0] (nats).networks[0] (default).static_ips", "2 static IPs for 3 instances"}}},
		{"a static IP listed twice", []string{"[10.0.1.10, 10.0.2.10]", "[10.0.1.10, 10.0.1.10]"},
			[]want{{"static_ips: [10.0.1.10, 10.0.1.10]", "instance_groups[0] (nats).networks[0] (default).static_ips[1]", "10.0.1.10 is listed twice"}}},
		{"static IPs on a dynamic network", []string{"networks: [{name: default}]", "networks: [{name: dhcp, static_ips: [10.0.1.11]}]"},
			[]want{{"networks: [{name: dhcp", "instance_groups[2] (smoke-tests).networks[0] (dhcp).static_ips", `network "dhcp" is dynamic`}}},
		{"max_in_flight zero is one, as in the director", []string{"max_in_flight: 25%", "max_in_flight: 0"}, nil},
		{"initial_deploy_az_update_strategy unknown", []string{"serial: false", "serial: false\n  initial_deploy_az_update_strategy: all"},
			[]want{{"initial_deploy_az_update_strategy: all", "update.initial_deploy_az_update_strategy", `"all" is not valid (expected serial or parallel)`}}},
		{"vm_strategy unknown", []string{"serial: false", "serial: false\n  vm_strategy: blue-green"},
			[]want{{"vm_strategy: blue-green", "update.vm_strategy", `"blue-green" is not valid (expected delete-create or create-swap-delete)`}}},
		{"update block without max_in_flight", []string{"  max_in_flight: 25%\n", ""},
			[]want{
				{"- name: nats\n  azs", "instance_groups[0] (nats)", "update max_in_flight not set"},
				{"- name: router", "instance_groups[1] (router)", "update max_in_flight not set"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "update max_in_flight not set"},
			}},
		{"group update fills the gap", []string{"  max_in_flight: 25%\n", "", "- name: nats\n  azs", "- name: nats\n  update: {max_in_flight: 2}\n  azs", "- name: router\n", "- name: router\n  update: {max_in_flight: 1}\n", "- name: smoke-tests\n", "- name: smoke-tests\n  update: {max_in_flight: 100%}\n"},
			nil},
		{"group update given by a placeholder", []string{"  max_in_flight: 25%\n", "", "- name: nats\n  azs", "- name: nats\n  update: ((nats_update))\n  azs", "- name: router\n", "- name: router\n  update: ((u))\n"},
			[]want{{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "update max_in_flight not set"}}},
		{"lifecycle unknown", []string{"lifecycle: errand", "lifecycle: cron"},
			[]want{{"lifecycle: cron", "instance_groups[2] (smoke-tests).lifecycle", `"cron" is not valid (expected service or errand)`}}},
		{"duplicate group", []string{"- name: smoke-tests", "- name: nats"},
			[]want{
				{"- name: nats\n  lifecycle", "instance_groups[2] (nats).name", `instance group "nats" is defined twice (first at line 18)`},
				{"static_ips: [10.0.1.10, 10.0.2.10]", "", ""}, // the group's IPs are not the other group's: same name
			}[:1]},
		{"second network without default", []string{"  - name: default\n  - name: public", "  - name: default\n  - name: backend\n  - name: public"},
			[]want{
				{"networks:\n  - name: default\n  - name: backend", "instance_groups[1] (router).networks", "one of them must be the default for dns"},
				{"networks:\n  - name: default\n  - name: backend", "instance_groups[1] (router).networks", "one of them must be the default for gateway"},
			}},
		{"two defaults", []string{"  - name: default\n  - name: public", "  - name: default\n    default: [dns, gateway]\n  - name: backend\n    default: [dns]\n  - name: public"},
			[]want{{"networks:\n  - name: default\n    default: [dns, gateway]\n  - name: backend", "instance_groups[1] (router).networks", "networks default, backend are all the default for dns"}}},
		{"vm_type and vm_resources", []string{"vm_type: large\n", "vm_type: large\n  vm_resources: {cpu: 2, ram: 4096, ephemeral_disk_size: 0}\n"},
			[]want{
				{"vm_resources:", "instance_groups[1] (router).vm_resources", "give vm_type or vm_resources, not both"},
				{"vm_resources:", "instance_groups[1] (router).vm_resources.ephemeral_disk_size", "must be greater than 0"},
			}},
		{"required keys missing", []string{"  azs: [z1]\n  instances: 1\n  vm_type: small\n  stemcell: default\n  networks: [{name: default}]\n  jobs: [{name: smoke, release: routing}]\n", ""},
			[]want{
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "azs is required"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "instances is required"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "jobs is required"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "vm_type (or vm_resources) is required"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "stemcell is required"},
				{"- name: smoke-tests", "instance_groups[2] (smoke-tests)", "networks is required"},
			}},
		{"every problem at once", []string{"name: demo\n", "", "vm_type: large\n  vm_extensions", "vm_type: tiny\n  vm_extensions", "lifecycle: errand", "lifecycle: cron", "release: nats\n", "release: nats-release\n"},
			[]want{
				{"releases:", "", "name is required"},
				{"release: nats-release", "instance_groups[0] (nats).jobs[0] (nats).release", `release "nats-release" is not in`},
				{"lifecycle: cron", "instance_groups[2] (smoke-tests).lifecycle", `"cron" is not valid`},
				{"vm_type: tiny", "instance_groups[1] (router).vm_type", `"tiny" is not defined`},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, baseManifest, tc.edits...)
			err := check(t, doc, baseCloud)
			ps := Problems(err)
			if len(tc.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Len(t, ps, len(tc.want), "%v", err)
			for _, w := range tc.want {
				found := false
				for _, p := range ps {
					if p.Path == w.path && strings.Contains(p.Message, w.msg) {
						found = true
						assert.Equal(t, "demo.yml", p.File)
						if w.at != "" {
							assert.Equal(t, lineIn(t, doc, w.at), p.Line, "line of %s: %s", p.Path, p.Message)
						}
					}
				}
				assert.True(t, found, "no problem %s: %s in\n%v", w.path, w.msg, err)
			}
		})
	}
}

// TestErrorFormat: the messages read "file:line: path: message", one per line.
// TestNetworkWithoutSubnetInAZ: a group's network needs a subnet in each of its azs.
func TestNetworkWithoutSubnetInAZ(t *testing.T) {
	cloud := edit(t, baseCloud, `  - range: 10.0.2.0/24
    gateway: 10.0.2.1
    azs: [z2]
    reserved: [10.0.2.2-10.0.2.9]
    static: [10.0.2.10-10.0.2.20]
`, "")
	ps := Problems(check(t, baseManifest, cloud))
	require.Len(t, ps, 2, "%v", ps)
	assert.Equal(t, "instance_groups[0] (nats).networks[0] (default).name", ps[0].Path)
	assert.Equal(t, `network "default" has no subnet in az "z2", one of the group's azs`, ps[0].Message)
	assert.Equal(t, "instance_groups[0] (nats).networks[0] (default).static_ips[1]", ps[1].Path)
	assert.Equal(t, `10.0.2.10 is not inside any subnet of network "default" (10.0.1.0/24)`, ps[1].Message)
}

// TestGroupAZWithoutZonedSubnet: a network whose subnets name no az cannot
// place a group that has azs (the director fails at placement).
func TestGroupAZWithoutZonedSubnet(t *testing.T) {
	cloud := edit(t, baseCloud, "    azs: [z1, z2]\n", "")
	cc, _, err := ParseCloudConfig("cloud.yml", []byte(cloud))
	require.NoError(t, err)
	require.NoError(t, cc.Validate(), "an unzoned subnet is fine on its own, as in the director")
	doc := edit(t, baseManifest, "networks: [{name: default}]", "networks: [{name: backend}]")
	ps := Problems(check(t, doc, cloud))
	require.Len(t, ps, 1, "%v", ps)
	assert.Equal(t, `network "backend" has no subnet in az "z1", one of the group's azs`, ps[0].Message)
}

func TestErrorFormat(t *testing.T) {
	doc := edit(t, baseManifest, "vm_type: large\n  vm_extensions", "vm_type: tiny\n  vm_extensions", "lifecycle: errand", "lifecycle: cron")
	err := check(t, doc, baseCloud)
	require.Error(t, err)
	line := lineIn(t, doc, "vm_type: tiny")
	assert.Contains(t, err.Error(), "2 problems:\n")
	assert.Contains(t, err.Error(), "\n  demo.yml:"+itoa(line)+`: instance_groups[1] (router).vm_type: "tiny" is not defined in the cloud-config's vm_types (defined: large, small)`)

	doc = edit(t, baseManifest, "vm_type: large\n  vm_extensions", "vm_type: tiny\n  vm_extensions")
	err = check(t, doc, baseCloud)
	assert.Equal(t, "demo.yml:"+itoa(line)+`: instance_groups[1] (router).vm_type: "tiny" is not defined in the cloud-config's vm_types (defined: large, small)`, err.Error())
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	s := ""
	for ; i > 0; i /= 10 {
		s = string(rune('0'+i%10)) + s
	}
	return s
}

func TestCloudConfigProblems(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edits []string
		at    string
		path  string
		msg   string
	}{
		{"gateway outside range", []string{"gateway: 10.0.1.1", "gateway: 10.0.5.1"}, "gateway: 10.0.5.1", "networks[0] (default).subnets[0].gateway", "10.0.5.1 is outside the subnet range 10.0.1.0/24"},
		{"gateway is the network address", []string{"gateway: 10.0.1.1", "gateway: 10.0.1.0"}, "gateway: 10.0.1.0", "networks[0] (default).subnets[0].gateway", "is the network or broadcast address"},
		{"bad range", []string{"range: 10.0.1.0/24", "range: 10.0.1.0/33"}, "range: 10.0.1.0/33", "networks[0] (default).subnets[0].range", `"10.0.1.0/33" is not a CIDR block`},
		{"reserved outside range", []string{"reserved: [10.0.1.2 - 10.0.1.9]", "reserved: [10.0.1.2 - 10.0.1.9, 10.0.7.1]"}, "reserved: [10.0.1.2 - 10.0.1.9, 10.0.7.1]", "networks[0] (default).subnets[0].reserved[1]", "10.0.7.1 is outside the subnet range 10.0.1.0/24"},
		{"bad reserved range", []string{"reserved: [10.0.1.2 - 10.0.1.9]", "reserved: [10.0.1.9 - 10.0.1.2]"}, "reserved: [10.0.1.9", "networks[0] (default).subnets[0].reserved[0]", "ends before it starts"},
		{"static overlaps reserved", []string{"static: [10.0.1.10 - 10.0.1.20]", "static: [10.0.1.8 - 10.0.1.20]"}, "static: [10.0.1.8", "networks[0] (default).subnets[0].static", "static IPs 10.0.1.8-10.0.1.9 are reserved"},
		{"static holds the gateway", []string{"static: [10.0.2.10-10.0.2.20]", "static: [10.0.2.1, 10.0.2.10-10.0.2.20]"}, "static: [10.0.2.1,", "networks[0] (default).subnets[1].static", "static IPs 10.0.2.1 are reserved (or the network, broadcast or gateway address)"},
		{"range of one address", []string{"range: 10.0.9.0/24", "range: 10.0.9.0/32"}, "range: 10.0.9.0/32", "networks[1] (backend).subnets[0].range", "holds a single address"},
		{"prefix larger than the range", []string{"range: 10.0.9.0/24\n", "range: 10.0.9.0/24\n    prefix: 20\n"}, "prefix: 20", "networks[1] (backend).subnets[0].prefix", "prefix /20 does not fit in the range 10.0.9.0/24"},
		{"subnet az not defined", []string{"az: z1\n    reserved", "az: z3\n    reserved"}, "az: z3", "networks[0] (default).subnets[0].az", `az "z3" is not defined in azs (defined: z1, z2)`},
		{"subnet with az and azs", []string{"    az: z1\n    reserved", "    az: z1\n    azs: [z1]\n    reserved"}, "azs: [z1]\n    reserved: [10.0.1.2", "networks[0] (default).subnets[0].azs", "give az or azs, not both"},
		{"subnet with empty azs", []string{"azs: [z1, z2]", "azs: []"}, "azs: []", "networks[1] (backend).subnets[0].azs", "must not be empty"},
		{"subnet azs not defined", []string{"azs: [z1, z2]", "azs: [z1, z5]"}, "azs: [z1, z5]", "networks[1] (backend).subnets[0].azs[1]", `az "z5" is not defined in azs`},
		{"disk_size zero", []string{"disk_size: 10240", "disk_size: 0"}, "disk_size: 0", "disk_types[0] (10GB).disk_size", "must be greater than 0"},
		{"duplicate vm_type", []string{"- name: large\n", "- name: large\n- name: small\n"}, "- name: small\nvm_ext", "vm_types[2] (small).name", `vm_type "small" is defined twice (first at line 31)`},
		{"compilation network undefined", []string{"network: default\n  vm_type", "network: internal\n  vm_type"}, "network: internal", "compilation.network", `"internal" is not defined in networks`},
		{"compilation vm_type undefined", []string{"vm_type: large\n", "vm_type: huge\n"}, "vm_type: huge", "compilation.vm_type", `"huge" is not defined in vm_types`},
		{"network type unknown", []string{"type: vip", "type: floating"}, "type: floating", "networks[2] (public).type", `"floating" is not valid (expected manual, dynamic or vip)`},
		{"manual network without subnets", []string{"- name: backend\n  subnets:\n  - range: 10.0.9.0/24\n    gateway: 10.0.9.1\n    azs: [z1, z2]\n", "- name: backend\n"}, "- name: backend", "networks[1] (backend)", "subnets is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := edit(t, baseCloud, tc.edits...)
			cc, _, err := ParseCloudConfig("cloud.yml", []byte(doc))
			require.NoError(t, err)
			err = cc.Validate()
			ps := Problems(err)
			require.Len(t, ps, 1, "%v", err)
			assert.Equal(t, tc.path, ps[0].Path)
			assert.Contains(t, ps[0].Message, tc.msg)
			assert.Equal(t, lineIn(t, doc, tc.at), ps[0].Line)
			assert.Equal(t, "cloud.yml", ps[0].File)
		})
	}
}

func TestCPIConfigAgainstCloud(t *testing.T) {
	doc := edit(t, baseCloud, "- name: z1\n", "- name: z1\n  cpi: openstack-1\n", "- name: z2\n", "- name: z2\n  cpi: vsphere-1\n")
	cc, _, err := ParseCloudConfig("cloud.yml", []byte(doc))
	require.NoError(t, err)
	cpi, _, err := ParseCPIConfig("cpi.yml", []byte("cpis:\n- name: openstack-1\n  type: openstack\n  properties: {auth_url: ((auth_url))}\n"))
	require.NoError(t, err)
	require.NoError(t, cpi.Validate())
	ps := Problems(cc.ValidateCPIs(cpi))
	require.Len(t, ps, 1)
	assert.Equal(t, "azs[1] (z2).cpi", ps[0].Path)
	assert.Contains(t, ps[0].Message, `cpi "vsphere-1" is not defined in the cpi-config (defined: openstack-1)`)
	assert.Len(t, Problems(cc.ValidateCPIs(nil)), 2, "no cpi-config at all")

	bad, _, err := ParseCPIConfig("cpi.yml", []byte("cpis:\n- name: a\n  type: openstack\n- name: a\n"))
	require.NoError(t, err)
	ps = Problems(bad.Validate())
	require.Len(t, ps, 2)
	assert.Contains(t, ps[0].Message, `cpi "a" is defined twice`)
	assert.Contains(t, ps[1].Message, "type is required")
}

func TestRuntimeConfigProblems(t *testing.T) {
	const rc = `releases:
- name: bosh-dns
  version: 1.36.0
- name: os-conf
  version: latest
addons:
- name: dns
  jobs:
  - name: bosh-dns
    release: bosh-dns
  include:
    stemcell: [{os: ubuntu-jammy}]
    lifecycle: always
- name: users
  jobs:
  - name: user_add
    release: os-conf-release
  exclude:
    jobs: [{name: smoke}]
`
	c, w, err := ParseRuntimeConfig("runtime.yml", []byte(rc))
	require.NoError(t, err)
	assert.Empty(t, w)
	ps := Problems(c.Validate())
	require.Len(t, ps, 4, "%v", ps)
	assert.Equal(t, "releases[1] (os-conf).version", ps[0].Path)
	assert.Contains(t, ps[0].Message, "not latest")
	assert.Equal(t, "addons[0] (dns).include.lifecycle", ps[1].Path)
	assert.Equal(t, lineIn(t, rc, "lifecycle: always"), ps[1].Line)
	assert.Equal(t, "addons[1] (users).jobs[0] (user_add).release", ps[2].Path)
	assert.Contains(t, ps[2].Message, `release "os-conf-release" is not in the runtime-config's releases (defined: bosh-dns, os-conf)`)
	assert.Equal(t, "addons[1] (users).exclude.jobs[0] (smoke)", ps[3].Path)
	assert.Contains(t, ps[3].Message, "release is required")
}

// TestPlaceholdersAreNotErrors: before interpolation a ((var)) may stand where
// a typed value is expected; validation skips what it cannot know.
func TestPlaceholdersAreNotErrors(t *testing.T) {
	doc := edit(t, baseManifest,
		"azs: [z1, z2]\n  instances: 2", "azs: ((nats_azs))\n  instances: ((nats_instances))",
		"vm_type: large\n", "vm_type: ((router_vm_type))\n",
		"static_ips: [10.0.1.10, 10.0.2.10]", "static_ips: ((nats_ips))",
		"static_ips: [203.0.113.5]", "static_ips: [((public_ip))]",
		"max_in_flight: 25%", "max_in_flight: ((max_in_flight))",
		"  - name: default\n  - name: public", "  - name: ((private_network))\n  - name: ((public_network))",
		"stemcells:\n- alias: default", "stemcells:\n- alias: ((stemcell_alias))",
		"networks: [{name: default}]", "networks: [((smoke_network))]",
		"- name: smoke-tests\n", "- name: smoke-tests\n  update: ((smoke_update))\n",
	)
	m, w, err := ParseManifest("demo.yml", []byte(doc))
	require.NoError(t, err)
	assert.Empty(t, w)
	assert.Equal(t, []string{"azs", "instances"}, m.InstanceGroups[0].Meta.Vars())
	assert.True(t, m.InstanceGroups[2].Networks[0].Meta.IsPlaceholder())
	assert.Equal(t, "((max_in_flight))", m.Update.Meta.Var("max_in_flight"))
	assert.Nil(t, m.Update.MaxInFlight)
	require.NoError(t, check(t, doc, baseCloud))

	// A placeholder in the cloud-config's subnet range skips its IP checks.
	cloud := edit(t, baseCloud, "range: 10.0.1.0/24", "range: ((z1_cidr))", "reserved: [10.0.1.2 - 10.0.1.9]", "reserved: ((z1_reserved))")
	require.NoError(t, check(t, baseManifest, cloud))

	// After interpolation the same values are checked.
	doc = edit(t, baseManifest, "vm_type: large\n", "vm_type: ((router_vm_type))\n")
	require.NoError(t, check(t, doc, baseCloud))
	doc = strings.ReplaceAll(doc, "((router_vm_type))", "xlarge")
	assert.Len(t, Problems(check(t, doc, baseCloud)), 1)
}

func TestParseTypeProblems(t *testing.T) {
	doc := edit(t, baseManifest,
		"instances: 2", "instances: two",
		"serial: false", "serial: maybe",
		"canary_watch_time: 1000-30000", "canary_watch_time: 30000-1000",
		"update_watch_time: 5000", "update_watch_time: soon",
		"vm_extensions: [lb]", "vm_extensions: lb",
		"persistent_disk_type: 10GB", "persistent_disk: {size: 10}",
		"max_in_flight: 25%", "max_in_flight: all",
	)
	_, _, err := ParseManifest("demo.yml", []byte(doc))
	ps := Problems(err)
	require.Len(t, ps, 7, "%v", err)
	byPath := map[string]*Problem{}
	for _, p := range ps {
		byPath[p.Path] = p
	}
	for path, want := range map[string]struct{ at, msg string }{
		"instance_groups[0] (nats).instances":       {"instances: two", `expected an integer, got "two"`},
		"update.serial":                             {"serial: maybe", `expected true or false, got "maybe"`},
		"update.canary_watch_time":                  {"canary_watch_time: 30000-1000", `watch time range "30000-1000" starts after it ends`},
		"update.update_watch_time":                  {"update_watch_time: soon", `expected milliseconds as a number or a range such as 1000-30000, got "soon"`},
		"instance_groups[1] (router).vm_extensions": {"vm_extensions: lb", `expected a list, got "lb"`},
		"instance_groups[0] (nats).persistent_disk": {"persistent_disk: {size", "expected an integer, got a map"},
		"update.max_in_flight":                      {"max_in_flight: all", `expected an integer or a percentage such as 25%, got "all"`},
	} {
		p := byPath[path]
		if assert.NotNil(t, p, path) {
			assert.Contains(t, p.Message, want.msg)
			assert.Equal(t, lineIn(t, doc, want.at), p.Line, path)
		}
	}
}

func TestParseDocumentProblems(t *testing.T) {
	_, _, err := ParseManifest("m.yml", []byte("name: x\ninstance_groups:\n- name: a\n  jobs: [\n"))
	ps := Problems(err)
	require.Len(t, ps, 1)
	assert.Equal(t, "m.yml", ps[0].File)
	assert.Greater(t, ps[0].Line, 0)
	assert.Contains(t, ps[0].Message, "invalid YAML")

	_, _, err = ParseManifest("m.yml", []byte("- a\n- b\n"))
	assert.EqualError(t, err, "m.yml:1: the deployment manifest must be a YAML map, got a list")
	_, _, err = ParseCloudConfig("c.yml", []byte("\n"))
	assert.EqualError(t, err, "c.yml:1: the cloud-config is empty")
}

func TestUnknownAndDuplicateKeysWarn(t *testing.T) {
	doc := edit(t, baseManifest, "- name: router\n", "- name: router\n  vm_typ: large\n", "serial: false", "serial: false\n  serial: true")
	m, w, err := ParseManifest("demo.yml", []byte(doc))
	require.NoError(t, err)
	require.Len(t, w, 2)
	assert.Equal(t, "update.serial", w[0].Path)
	assert.Contains(t, w[0].Message, "duplicate key")
	assert.True(t, m.Update.IsSerial(), "the last value wins, as in BOSH")
	assert.Equal(t, "instance_groups[1] (router).vm_typ", w[1].Path)
	assert.Equal(t, lineIn(t, doc, "vm_typ: large"), w[1].Line)
	assert.Equal(t, "unknown key, ignored", w[1].Message)
}

func TestCreateEnvManifest(t *testing.T) {
	const doc = `name: bosh
cloud_provider:
  mbus: https://mbus:((pw))@10.0.0.6:6868
  template: {name: openstack_cpi, release: bosh-openstack-cpi}
disk_pools:
- name: disks
  disk_size: 65536
resource_pools:
- name: vms
  network: default
  stemcell: {url: file://stemcell.tgz, sha1: abc}
  env:
    bosh:
      password: '*'
      mbus: {cert: ((mbus_ssl))}
    vsphere: {custom: true}
networks:
- name: default
  type: manual
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.0.1
    static: [10.0.0.6]
releases:
- name: bosh
  url: https://example.com/bosh.tgz
  sha1: abc
- name: bosh-openstack-cpi
  version: "47"
instance_groups:
- name: bosh
  instances: 1
  jobs: [{name: director, release: bosh}]
  resource_pool: vms
  persistent_disk_pool: disks
  networks: [{name: default, static_ips: [10.0.0.6]}]
`
	m, w, err := ParseManifest("bosh.yml", []byte(doc))
	require.NoError(t, err)
	assert.Empty(t, w, "create-env keys are known; env keys for the CPI are accepted")
	assert.True(t, m.IsCreateEnv())
	assert.Equal(t, map[string]any{"custom": true}, m.ResourcePools[0].Env.Raw["vsphere"])
	require.NoError(t, m.Validate())
	require.NoError(t, m.ValidateCloud(nil), "create-env manifests carry their own networks")

	bad := strings.Replace(doc, "static_ips: [10.0.0.6]", "static_ips: [10.0.0.7]", 1)
	bad = strings.Replace(bad, "resource_pool: vms", "resource_pool: vm", 1)
	m, _, err = ParseManifest("bosh.yml", []byte(bad))
	require.NoError(t, err)
	ps := Problems(m.Validate())
	require.Len(t, ps, 2, "%v", ps)
	assert.Contains(t, ps[0].Message, `"vm" is not defined in resource_pools (defined: vms)`)
	assert.Contains(t, ps[1].Message, "10.0.0.7 is not in the static IPs of the subnet 10.0.0.0/24")
}

func TestManifestModel(t *testing.T) {
	doc := edit(t, baseManifest, "  jobs:\n  - name: gorouter\n    release: routing\n", `  jobs:
  - name: gorouter
    release: routing
    consumes:
      nats: {from: nats-tls, ip_addresses: true}
      routing_api: nil
      credhub: ~
    provides:
      gorouter: {as: router, shared: true}
    properties: {}
  env:
    persistent_disk_fs: xfs
    bosh:
      swap_size: 0
      ipv6: {enable: true}
      job_dir: {tmpfs: true, tmpfs_size: 200m}
  update:
    canaries: 50%
    serial: true
`)
	m, w, err := ParseManifest("demo.yml", []byte(doc))
	require.NoError(t, err)
	assert.Empty(t, w)
	require.NoError(t, check(t, doc, baseCloud))
	cc, _, err := ParseCloudConfig("cloud.yml", []byte(baseCloud))
	require.NoError(t, err)
	r := m.InstanceGroups[1]
	job := r.Jobs[0]
	assert.Equal(t, "nats-tls", job.Consumes["nats"].From)
	assert.True(t, *job.Consumes["nats"].IPAddresses)
	assert.True(t, job.Consumes["routing_api"].Blocked, "the word nil blocks a link")
	assert.True(t, job.Consumes["credhub"].Blocked, "null blocks a link")
	assert.False(t, job.Consumes["nats"].Blocked)
	assert.Equal(t, "router", job.Provides["gorouter"].As)
	assert.NotNil(t, job.Properties, "properties: {} is set (group properties are then ignored)")
	assert.Nil(t, m.InstanceGroups[0].Jobs[0].Properties)
	assert.Equal(t, "xfs", r.Env.PersistentDiskFS)
	assert.Equal(t, 0, *r.Env.Bosh.SwapSize)
	assert.Equal(t, "200m", r.Env.Bosh.JobDir.TmpfsSize)

	eff := m.UpdateFor(m.InstanceGroup("router"))
	assert.Equal(t, m.Update.Merge(r.Update), eff)
	assert.Equal(t, CountOrPercent{N: 50, Percent: true}, *eff.Canaries)
	assert.Equal(t, CountOrPercent{N: 25, Percent: true}, *eff.MaxInFlight)
	assert.True(t, eff.IsSerial())
	assert.False(t, m.Update.IsSerial())
	assert.Equal(t, WatchTime{5000, 5000}, *eff.UpdateWatchTime)
	assert.Equal(t, VMStrategyDeleteCreate, eff.Strategy())
	assert.Equal(t, LifecycleErrand, m.InstanceGroups[2].LifecycleOrDefault())
	assert.Equal(t, LifecycleService, r.LifecycleOrDefault())
	assert.Equal(t, "ubuntu-jammy", m.StemcellOS("default"))
	assert.Equal(t, "latest", m.Release("routing").Version)
	assert.Equal(t, "ubuntu-jammy", m.Stemcell("default").OS)
	assert.Nil(t, m.InstanceGroup("nope"))
	assert.Equal(t, "default", r.DefaultNetworkFor("gateway", cc), "public is a vip network")
	assert.Equal(t, "", r.DefaultNetworkFor("gateway", nil), "without the cloud-config two networks are ambiguous")
	assert.Equal(t, "default", m.InstanceGroups[0].DefaultNetworkFor("dns", nil))

	sub := cc.Network("default").SubnetsIn("z2")
	require.Len(t, sub, 1)
	assert.Equal(t, "10.0.2.0/24", sub[0].Range)
	assert.Len(t, cc.Network("backend").SubnetsIn("z1"), 1)
	assert.Len(t, cc.Network("dhcp").SubnetsIn("z3"), 0)
}

func TestYAMLAnchorsAndMerge(t *testing.T) {
	doc := `name: demo
releases: [{name: r, version: "1"}]
stemcells: [{alias: default, os: ubuntu-jammy, version: "1.5"}]
update: &upd {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
instance_groups:
- &base
  name: a
  azs: [z1]
  instances: 1
  vm_type: small
  stemcell: default
  networks: [{name: default}]
  jobs: [{name: j, release: r}]
- <<: *base
  name: b
  update: *upd
`
	m, w, err := ParseManifest("demo.yml", []byte(doc))
	require.NoError(t, err)
	assert.Empty(t, w)
	require.Len(t, m.InstanceGroups, 2)
	assert.Equal(t, "b", m.InstanceGroups[1].Name)
	assert.Equal(t, []string{"z1"}, m.InstanceGroups[1].AZs)
	assert.Equal(t, 1, m.InstanceGroups[1].Update.MaxInFlight.N)
	require.NoError(t, m.Validate())
}
