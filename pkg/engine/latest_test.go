package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/state"
)

// `version: latest` of a release uploaded from its directory again and again
// (content-named 0+dev.<hash> versions) is the one uploaded last, not the
// greatest hash; numbered versions keep their semantic order.
func TestLatestReleaseOfContentNamedVersionsIsTheLastUploaded(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)
	rels := []state.Release{
		{Name: "kubernetes", Version: "0+dev.c1eb89bd5fac", UploadedAt: t0},
		{Name: "kubernetes", Version: "0+dev.b0e2160cddf3", UploadedAt: t0.Add(20 * time.Minute)},
		{Name: "kubernetes", Version: "0+dev.36fee98d16f1", UploadedAt: t0.Add(2 * time.Minute)},
		{Name: "other", Version: "0+dev.ffffffffffff", UploadedAt: t0.Add(time.Hour)},
	}
	got, ok := MatchRelease(rels, manifest.Release{Name: "kubernetes", Version: "latest"})
	assert.True(t, ok)
	assert.Equal(t, "0+dev.b0e2160cddf3", got.Version)

	got, ok = MatchRelease(rels, manifest.Release{Name: "kubernetes", Version: "0+dev.c1eb89bd5fac"})
	assert.True(t, ok)
	assert.Equal(t, "0+dev.c1eb89bd5fac", got.Version, "an exact version is taken as given")

	numbered := []state.Release{
		{Name: "hello", Version: "0+dev.10", UploadedAt: t0},
		{Name: "hello", Version: "0+dev.9", UploadedAt: t0.Add(time.Minute)},
		{Name: "hello", Version: "2.1", UploadedAt: t0.Add(-time.Hour)},
		{Name: "hello", Version: "10.0", UploadedAt: t0.Add(-2 * time.Hour)},
	}
	got, _ = MatchRelease(numbered, manifest.Release{Name: "hello", Version: "latest"})
	assert.Equal(t, "10.0", got.Version, "semantic order, whatever the upload order")
	got, _ = MatchRelease(numbered[:2], manifest.Release{Name: "hello", Version: "latest"})
	assert.Equal(t, "0+dev.10", got.Version, "BOSH's numbered dev versions compare as numbers")
}
