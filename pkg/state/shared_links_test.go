package state_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/state/statetest"
)

func TestSharedLinksAreReplacedAndDroppedWithTheDeployment(t *testing.T) {
	eachBackend(t, func(t *testing.T, b statetest.Backend) {
		ctx := context.Background()
		s := newStore(t, b)
		sampleDeployment(t, s, "cf", 1)
		_, err := s.SharedLinks(ctx, "cf")
		assert.ErrorIs(t, err, state.ErrNotFound)
		require.NoError(t, s.SaveSharedLinks(ctx, "cf", `[{"name":"a"}]`))
		require.NoError(t, s.SaveSharedLinks(ctx, "cf", `[{"name":"b"}]`))
		require.NoError(t, s.SaveSharedLinks(ctx, "other", `[]`))
		got, err := s.SharedLinks(ctx, "cf")
		require.NoError(t, err)
		assert.Equal(t, `[{"name":"b"}]`, got, "the last deploy's links replace the previous ones")
		require.NoError(t, s.Update(ctx, func(tx state.Tx) error {
			got, err := tx.SharedLinks(ctx, "other")
			assert.Equal(t, "[]", got)
			return err
		}))
		require.NoError(t, s.DeleteDeployment(ctx, "cf"))
		_, err = s.SharedLinks(ctx, "cf")
		assert.ErrorIs(t, err, state.ErrNotFound)
		got, err = s.SharedLinks(ctx, "other")
		require.NoError(t, err)
		assert.Equal(t, "[]", got)
	})
}
