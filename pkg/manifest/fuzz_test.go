package manifest

import "testing"

// FuzzParse: no input makes parsing or validation panic. The seeds run with
// every `go test`; `go test -fuzz FuzzParse ./pkg/manifest` explores further.
func FuzzParse(f *testing.F) {
	for _, s := range []string{baseManifest, baseCloud, "name: x\ninstance_groups: [{name: a, networks: [((n))], jobs: [~, nil]}]\n",
		"azs: &a [{name: z1}]\nnetworks: [{name: n, subnets: [{range: 10.0.0.0/30, gateway: 10.0.0.1, static: [10.0.0.2], azs: *a}]}]\n",
		"addons: [{name: a, include: {stemcell: [x]}, jobs: [{name: j, release: r, consumes: {l: nil}}]}]\n", "<<: {name: x}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		if m, _, err := ParseManifest("m.yml", []byte(doc)); err == nil {
			_ = m.Validate()
			if cc, _, err := ParseCloudConfig("c.yml", []byte(doc)); err == nil {
				_ = cc.Validate()
				_ = m.ValidateCloud(cc)
			}
		}
		if rc, _, err := ParseRuntimeConfig("r.yml", []byte(doc)); err == nil {
			_ = rc.Validate()
		}
		if c, _, err := ParseCPIConfig("p.yml", []byte(doc)); err == nil {
			_ = c.Validate()
		}
	})
}
