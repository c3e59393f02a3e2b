package interpolate

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sharedDir finds ../shared (or $KPAAS_SHARED) next to the module root.
func sharedDir(tb testing.TB) string {
	tb.Helper()
	if d := os.Getenv("KPAAS_SHARED"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	d := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared")
	if _, err := os.Stat(filepath.Join(d, "compat", "corpus")); err != nil {
		tb.Skip("../shared/compat is absent: no corpus to benchmark on")
	}
	return d
}

// case 007: cf-deployment, five ops files, two vars files (fake credentials), --var-errs.
var case007 = struct{ manifest, ops, vars []string }{
	manifest: []string{"cf-deployment/cf-deployment.yml"},
	ops: []string{
		"cf-deployment/operations/use-compiled-releases.yml",
		"cf-deployment/operations/scale-to-one-az.yml",
		"cf-deployment/operations/use-postgres.yml",
		"cf-deployment/operations/rename-network-and-deployment.yml",
		"cf-deployment/operations/use-haproxy.yml",
	},
	vars: []string{"_fixtures/cf/cf-env-vars.yml", "_fixtures/cf/cf-fake-creds.yml"},
}

func readCorpus(b *testing.B, corpus string, names []string) []File {
	var files []File
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(corpus, n))
		if err != nil {
			b.Fatal(err)
		}
		files = append(files, File{Name: n, Data: data})
	}
	return files
}

// BenchmarkInterpolateCF007 is case 007 from the files' bytes to the printed YAML:
// parse the ops and vars files, apply, interpolate, render.
func BenchmarkInterpolateCF007(b *testing.B) {
	corpus := filepath.Join(sharedDir(b), "compat", "corpus")
	manifest := readCorpus(b, corpus, case007.manifest)[0]
	ops := readCorpus(b, corpus, case007.ops)
	varsFiles := readCorpus(b, corpus, case007.vars)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := Request{Manifest: manifest, ExpectAllKeys: true}
		for _, f := range ops {
			of, err := ParseOpsFile(f.Name, f.Data)
			if err != nil {
				b.Fatal(err)
			}
			req.OpsFiles = append(req.OpsFiles, of)
		}
		for _, f := range varsFiles {
			m, err := ParseVarsFile(f.Name, f.Data)
			if err != nil {
				b.Fatal(err)
			}
			req.Vars.Files = append(req.Vars.Files, m)
		}
		res, err := Evaluate(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := res.YAML(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInterpolateCF008 is case 008: the same with a 580 KB vars store (read once).
func BenchmarkInterpolateCF008(b *testing.B) {
	shared := sharedDir(b)
	corpus := filepath.Join(shared, "compat", "corpus")
	manifest := readCorpus(b, corpus, case007.manifest)[0]
	ops := readCorpus(b, corpus, case007.ops)
	envVars := readCorpus(b, corpus, case007.vars[:1])[0]
	seed, err := os.ReadFile(filepath.Join(shared, "compat", "cases", "008-cf-5ops-seeded-store", "seed", "creds.yml"))
	if err != nil {
		b.Fatal(err)
	}
	store := filepath.Join(b.TempDir(), "creds.yml")
	if err := os.WriteFile(store, seed, 0o600); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := Request{Manifest: manifest, ExpectAllKeys: true}
		for _, f := range ops {
			of, err := ParseOpsFile(f.Name, f.Data)
			if err != nil {
				b.Fatal(err)
			}
			req.OpsFiles = append(req.OpsFiles, of)
		}
		m, err := ParseVarsFile(envVars.Name, envVars.Data)
		if err != nil {
			b.Fatal(err)
		}
		req.Vars.Files = []map[string]any{m}
		st, err := OpenStore(store, nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Vars.Store = st
		res, err := Evaluate(req)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Generated()) > 0 {
			b.Fatal("the seeded store must not change")
		}
		if _, err := res.YAML(); err != nil {
			b.Fatal(err)
		}
	}
}
