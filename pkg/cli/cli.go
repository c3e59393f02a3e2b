// Package cli builds the root command, its global flags, and turns the errors
// commands return into exit codes and messages, in one place. It imports every
// command package; nothing imports it but cmd/kpaas.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	cpicmd "github.com/kpaas/kpaas/pkg/cmd/cpi"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Version is set at build time with -ldflags "-X github.com/kpaas/kpaas/pkg/cli.Version=...".
var Version = "dev"

// Main runs kpaas with the process's arguments and streams and returns the exit code.
func Main() int {
	return Run(context.Background(), os.Args[1:], ui.System())
}

// Run runs kpaas with args on the given streams. A first SIGINT/SIGTERM cancels
// the context given to commands (they finish in-flight work and save); a second
// one exits at once.
func Run(ctx context.Context, args []string, ios *ui.IOStreams) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		n := 0
		for range sigs {
			n++
			if n == 1 {
				fmt.Fprintln(ios.ErrOut, "\nStopping: finishing work in flight and saving state (Ctrl-C again to abort now)")
				cancel()
				continue
			}
			fmt.Fprintln(ios.ErrOut, "Aborted.")
			os.Exit(cmdutil.ExitCancelled)
		}
	}()

	f := NewFactory(ios)
	root := NewRootCmd(f)
	root.SetArgs(args)
	root.SetIn(ios.In)
	root.SetOut(ios.Out)
	root.SetErr(ios.ErrOut)
	cmd, err := root.ExecuteContextC(ctx)
	return HandleError(ios.ErrOut, cmd, err)
}

// NewFactory builds the Factory shared by every command.
func NewFactory(ios *ui.IOStreams) *cmdutil.Factory {
	g := &cmdutil.GlobalOptions{}
	f := &cmdutil.Factory{IO: ios, Globals: g, Now: time.Now, Version: Version, Drivers: cpicmd.Drivers}
	var once sync.Once
	var logger *slog.Logger
	f.Logger = func() *slog.Logger {
		once.Do(func() { logger = newLogger(g, ios.ErrOut) })
		return logger
	}
	return f
}

func newLogger(g *cmdutil.GlobalOptions, errOut io.Writer) *slog.Logger {
	level := g.LogLevel
	if level == "" {
		level = os.Getenv("KPAAS_LOG_LEVEL")
	}
	var w io.Writer = io.Discard
	if g.LogFile != "" {
		if fh, err := os.OpenFile(g.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err == nil {
			w = fh
		} else {
			fmt.Fprintf(errOut, "Warning: cannot open log file: %v\n", err)
		}
		if level == "" {
			level = "info"
		}
	} else if level != "" {
		w = errOut
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// HandleError prints err (if any) and returns the exit code it maps to.
func HandleError(errOut io.Writer, cmd *cobra.Command, err error) int {
	if err == nil {
		return cmdutil.ExitOK
	}
	var exitErr *cmdutil.ExitCodeError
	if errors.As(err, &exitErr) {
		if exitErr.Err != nil {
			fmt.Fprintf(errOut, "Error: %s\n", exitErr.Err)
		}
		return exitErr.Code
	}
	if errors.Is(err, cmdutil.ErrCancelled) || errors.Is(err, context.Canceled) {
		fmt.Fprintln(errOut, "Cancelled.")
		return cmdutil.ExitCancelled
	}
	fmt.Fprintf(errOut, "Error: %s\n", strings.TrimRight(err.Error(), "\n"))
	var flagErr *cmdutil.FlagError
	if errors.As(err, &flagErr) || isCobraUsageError(err) {
		if cmd != nil {
			fmt.Fprintf(errOut, "\nUsage:\n  %s\n\nRun '%s --help' for more.\n", cmd.UseLine(), cmd.CommandPath())
		}
		return cmdutil.ExitError
	}
	var coder cmdutil.ExitCoder
	if errors.As(err, &coder) {
		return coder.ExitCode()
	}
	return cmdutil.ExitError
}

func isCobraUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
