package release

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSortPackages(t *testing.T) {
	nodes := []PackageNode{
		{Name: "app", Dependencies: []string{"ruby", "libyaml"}},
		{Name: "ruby", Dependencies: []string{"libyaml", "openssl"}},
		{Name: "openssl"},
		{Name: "libyaml"},
		{Name: "tools"},
	}
	order, err := SortPackages(nodes)
	require.NoError(t, err)
	assert.Equal(t, []string{"libyaml", "openssl", "tools", "ruby", "app"}, order)
	layers, err := DependencyLayers(nodes)
	require.NoError(t, err)
	assert.Equal(t, [][]string{{"libyaml", "openssl", "tools"}, {"ruby"}, {"app"}}, layers)
}

func TestSortPackagesErrors(t *testing.T) {
	_, err := SortPackages([]PackageNode{
		{Name: "a", Dependencies: []string{"b"}},
		{Name: "b", Dependencies: []string{"c"}},
		{Name: "c", Dependencies: []string{"a"}},
		{Name: "d", Dependencies: []string{"a"}},
		{Name: "e"},
	})
	var ce *CycleError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{"a", "b", "c", "a"}, ce.Cycle)
	assert.ErrorIs(t, err, ErrDependencyCycle)
	assert.Contains(t, err.Error(), "a -> b -> c -> a")

	_, err = SortPackages([]PackageNode{{Name: "x", Dependencies: []string{"x"}}})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, []string{"x", "x"}, ce.Cycle)

	_, err = SortPackages([]PackageNode{{Name: "x", Dependencies: []string{"gcc"}}})
	assert.EqualError(t, err, `package "x" depends on "gcc", which is not in the release`)
}

func TestVersionOrder(t *testing.T) {
	ordered := []string{"0+dev.1", "0+dev.2", "0+dev.10", "1-rc.1", "1", "1+dev.1", "1.1", "2", "10", "10.0.1"}
	for i := 0; i+1 < len(ordered); i++ {
		a, err := ParseVersion(ordered[i])
		require.NoError(t, err)
		b, err := ParseVersion(ordered[i+1])
		require.NoError(t, err)
		assert.Equal(t, -1, a.Compare(b), "%s < %s", a, b)
		assert.Equal(t, 1, b.Compare(a), "%s > %s", b, a)
	}
	v, _ := ParseVersion("3")
	assert.Equal(t, "3+dev.1", v.NextDev().String())
	assert.Equal(t, "4", v.NextFinal().String())
	v, _ = ParseVersion("3+dev.9")
	assert.Equal(t, "3+dev.10", v.NextDev().String())
	assert.Equal(t, "4", v.NextFinal().String())
	v, _ = ParseVersion("1.9")
	assert.Equal(t, "1.10", v.NextFinal().String())
	_, err := ParseVersion("1..2")
	assert.Error(t, err)
}

func TestNextVersionsFromIndices(t *testing.T) {
	dir := t.TempDir()
	next := func(final bool) string {
		var v Version
		var err error
		if final {
			v, err = NextFinalVersion(dir, "r")
		} else {
			v, err = NextDevVersion(dir, "r")
		}
		require.NoError(t, err)
		return v.String()
	}
	record := func(version string, final bool) {
		require.NoError(t, RecordRelease(dir, &Manifest{Name: "r", Version: version}, final))
	}
	assert.Equal(t, "0+dev.1", next(false))
	assert.Equal(t, "1", next(true))
	record("0+dev.1", false)
	assert.Equal(t, "0+dev.2", next(false))
	record("0+dev.2", false)
	record("1", true)
	assert.Equal(t, "1+dev.1", next(false), "after final 1")
	assert.Equal(t, "2", next(true))
	record("3", true)
	assert.Equal(t, "3+dev.1", next(false))
	var exists *ErrVersionExists
	require.ErrorAs(t, RecordRelease(dir, &Manifest{Name: "r", Version: "3"}, true), &exists)
}

// Property: for random acyclic graphs every package comes after its
// dependencies and layers hold only packages whose dependencies are earlier.
func TestDependencyLayersRandomDAGs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		n := 1 + rng.IntN(30)
		nodes := make([]PackageNode, n)
		for i := range nodes {
			nodes[i].Name = fmt.Sprintf("p%02d", i)
			for j := 0; j < i; j++ {
				if rng.IntN(4) == 0 {
					nodes[i].Dependencies = append(nodes[i].Dependencies, fmt.Sprintf("p%02d", j))
				}
			}
		}
		rng.Shuffle(n, func(a, b int) { nodes[a], nodes[b] = nodes[b], nodes[a] })
		layers, err := DependencyLayers(nodes)
		require.NoError(t, err)
		layerOf := map[string]int{}
		total := 0
		for li, l := range layers {
			for _, name := range l {
				layerOf[name] = li
				total++
			}
		}
		require.Equal(t, n, total)
		for _, nd := range nodes {
			for _, d := range nd.Dependencies {
				assert.Less(t, layerOf[d], layerOf[nd.Name], "%s needs %s", nd.Name, d)
			}
		}
		// A back edge from the first package to the last makes a cycle that is named.
		if n > 1 {
			var first, last *PackageNode
			for i := range nodes {
				if nodes[i].Name == "p00" {
					first = &nodes[i]
				}
			}
			for i := range nodes {
				for _, d := range nodes[i].Dependencies {
					if d == "p00" {
						last = &nodes[i]
					}
				}
			}
			if last != nil {
				first.Dependencies = append(first.Dependencies, last.Name)
				_, err := DependencyLayers(nodes)
				var ce *CycleError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, ce.Cycle[0], ce.Cycle[len(ce.Cycle)-1])
				deps := map[string][]string{}
				for _, nd := range nodes {
					deps[nd.Name] = nd.Dependencies
				}
				for i := 0; i+1 < len(ce.Cycle); i++ {
					assert.Contains(t, deps[ce.Cycle[i]], ce.Cycle[i+1], "cycle edge %s -> %s exists", ce.Cycle[i], ce.Cycle[i+1])
				}
			}
		}
	}
}

func TestVersionBigNumbers(t *testing.T) {
	v, err := ParseVersion("18446744073709551615+dev.18446744073709551615")
	require.NoError(t, err)
	assert.Equal(t, "18446744073709551615+dev.18446744073709551616", v.NextDev().String())
	assert.Equal(t, "18446744073709551616", v.NextFinal().String())
	assert.Equal(t, -1, v.Compare(v.NextDev()))
	a, _ := ParseVersion("1.010")
	b, _ := ParseVersion("1.9")
	assert.Equal(t, 1, a.Compare(b))
	assert.Equal(t, "1.11", a.NextFinal().String())
}
