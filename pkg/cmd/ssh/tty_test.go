package ssh

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// A shell from a real terminal: kpaas puts it in raw mode, asks the agent for
// a PTY of the terminal's size with $TERM, forwards window changes, and
// restores the terminal at the end.
func TestInteractiveShellFromATerminal(t *testing.T) {
	_, targets := twoAgents(t)
	ptmx, tty, err := pty.Open()
	require.NoError(t, err)
	defer ptmx.Close()
	defer tty.Close()
	require.NoError(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}))
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	require.NoError(t, err)
	t.Setenv("TERM", "vt220")

	ios := &ui.IOStreams{In: tty, Out: tty, ErrOut: tty}
	ios.SetTTY(true)
	out := &lockedBuffer{}
	go io.Copy(out, ptmx)

	done := make(chan error, 1)
	go func() {
		done <- sshRun(context.Background(), &Options{IO: ios, Targets: targets, Deployment: "dep", Selector: "web/0"})
	}()
	io.WriteString(ptmx, "echo term=$TERM; stty size\n")
	waitFor(t, out, "30 100")
	require.NoError(t, pty.Setsize(ptmx, &pty.Winsize{Rows: 50, Cols: 132}))
	syscall.Kill(os.Getpid(), syscall.SIGWINCH) // the kernel signals the terminal's own session only
	time.Sleep(200 * time.Millisecond)
	io.WriteString(ptmx, "stty size; exit 3\n")
	var ec *cmdutil.ExitCodeError
	select {
	case err := <-done:
		require.ErrorAs(t, err, &ec)
	case <-time.After(20 * time.Second):
		t.Fatalf("shell did not end; output so far: %q", out.String())
	}
	assert.Equal(t, 3, ec.Code)
	waitFor(t, out, "50 132")
	assert.Contains(t, out.String(), "term=vt220")
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	require.NoError(t, err)
	assert.Equal(t, before.Lflag, after.Lflag, "the terminal is restored from raw mode")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func waitFor(t *testing.T, out *lockedBuffer, s string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), s) }, 10*time.Second, 20*time.Millisecond, "waiting for %q", s)
}
