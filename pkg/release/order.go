package release

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// PackageNode is a package and the packages it needs at compile time.
type PackageNode struct {
	Name         string
	Dependencies []string
}

// ErrDependencyCycle is wrapped by *CycleError.
var ErrDependencyCycle = errors.New("package dependency cycle")

// CycleError names the packages of a dependency cycle, in order, the first
// repeated at the end.
type CycleError struct{ Cycle []string }

func (e *CycleError) Error() string {
	return fmt.Sprintf("package dependency cycle: %s (remove one of these dependencies from its package spec)", strings.Join(e.Cycle, " -> "))
}
func (e *CycleError) Unwrap() error { return ErrDependencyCycle }

// SortPackages orders packages so that each comes after its dependencies, as
// compilation needs. Among packages that are ready at the same time the order is
// by name, so the result is deterministic. Unknown dependencies and cycles are
// errors.
func SortPackages(nodes []PackageNode) ([]string, error) {
	layers, err := DependencyLayers(nodes)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range layers {
		out = append(out, l...)
	}
	return out, nil
}

// DependencyLayers groups packages into layers: layer 0 has no dependencies,
// layer n depends only on earlier layers. Packages of one layer can compile in
// parallel. Each layer is sorted by name.
func DependencyLayers(nodes []PackageNode) ([][]string, error) {
	deps := make(map[string][]string, len(nodes))
	for _, n := range nodes {
		if _, dup := deps[n.Name]; dup {
			return nil, fmt.Errorf("package %q is listed twice", n.Name)
		}
		deps[n.Name] = n.Dependencies
	}
	var unknown []string
	for _, n := range nodes {
		for _, d := range n.Dependencies {
			if _, ok := deps[d]; !ok {
				unknown = append(unknown, fmt.Sprintf("package %q depends on %q, which is not in the release", n.Name, d))
			}
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, errors.New(strings.Join(unknown, "; "))
	}
	remaining := make(map[string]int, len(nodes)) // unmet dependency count
	dependents := map[string][]string{}
	for _, n := range nodes {
		seen := map[string]bool{}
		for _, d := range n.Dependencies {
			if seen[d] {
				continue
			}
			seen[d] = true
			remaining[n.Name]++
			dependents[d] = append(dependents[d], n.Name)
		}
	}
	var layers [][]string
	var ready []string
	for _, n := range nodes {
		if remaining[n.Name] == 0 {
			ready = append(ready, n.Name)
		}
	}
	done := 0
	for len(ready) > 0 {
		sort.Strings(ready)
		layers = append(layers, ready)
		done += len(ready)
		var next []string
		for _, r := range ready {
			for _, dep := range dependents[r] {
				remaining[dep]--
				if remaining[dep] == 0 {
					next = append(next, dep)
				}
			}
		}
		ready = next
	}
	if done < len(nodes) {
		return nil, &CycleError{Cycle: findCycle(deps, remaining)}
	}
	return layers, nil
}

// findCycle walks unmet dependencies from the smallest stuck package until a
// package repeats.
func findCycle(deps map[string][]string, remaining map[string]int) []string {
	var stuck []string
	for n, c := range remaining {
		if c > 0 {
			stuck = append(stuck, n)
		}
	}
	sort.Strings(stuck)
	pos := map[string]int{}
	var path []string
	cur := stuck[0]
	for {
		if i, ok := pos[cur]; ok {
			return append(path[i:], cur)
		}
		pos[cur] = len(path)
		path = append(path, cur)
		ds := append([]string(nil), deps[cur]...)
		sort.Strings(ds)
		for _, d := range ds {
			if remaining[d] > 0 {
				cur = d
				break
			}
		}
	}
}
