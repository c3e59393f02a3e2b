package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

type lockErr struct{}

func (lockErr) Error() string { return "deployment cf is locked by ci@host" }
func (lockErr) ExitCode() int { return cmdutil.ExitLockHeld }

func TestHandleErrorExitCodes(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"nil", nil, 0, ""},
		{"plain", errors.New("boom"), 1, "Error: boom\n"},
		{"cancelled", fmt.Errorf("deploying: %w", cmdutil.ErrCancelled), 2, "Cancelled.\n"},
		{"context cancelled", fmt.Errorf("deploying: %w", context.Canceled), 2, "Cancelled.\n"},
		{"lock held", fmt.Errorf("deploying: %w", lockErr{}), 3, "Error: deploying: deployment cf is locked by ci@host\n"},
		{"silent exit", &cmdutil.ExitCodeError{Code: 4}, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ios, _, _, errOut := ui.Test()
			assert.Equal(t, tt.code, HandleError(ios.ErrOut, nil, tt.err))
			assert.Equal(t, tt.msg, errOut.String())
		})
	}
}

func TestRunUnknownCommand(t *testing.T) {
	ios, _, out, errOut := ui.Test()
	code := Run(context.Background(), []string{"no-such-command"}, ios)
	assert.Equal(t, 1, code)
	assert.Empty(t, out.String())
	assert.Contains(t, errOut.String(), `unknown command "no-such-command"`)
	assert.Contains(t, errOut.String(), "Usage:")
}

func TestRunVersionJSON(t *testing.T) {
	ios, _, out, _ := ui.Test()
	assert.Equal(t, 0, Run(context.Background(), []string{"version", "--json"}, ios))
	assert.JSONEq(t, fmt.Sprintf(`{"version":%q,"go_version":%q,"platform":%q}`, Version, goVersion(), platform()), out.String())
}
