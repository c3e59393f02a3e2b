package cpitest

import "github.com/kpaas/kpaas/cpi/fake"

// The in-memory (or file-backed) fake CPI lives in cpi/fake, which the kpaas
// binary serves as `kpaas cpi fake` without linking this package's testing
// helpers; these names keep the tests that use it through cpitest working.
type (
	Fake     = fake.Fake
	FakeVM   = fake.FakeVM
	FakeDisk = fake.FakeDisk
	Call     = fake.Call
)

// NewFake is fake.NewFake.
func NewFake() *Fake { return fake.NewFake() }

// NewFakeFile is fake.NewFakeFile.
func NewFakeFile(path string) (*Fake, error) { return fake.NewFakeFile(path) }
