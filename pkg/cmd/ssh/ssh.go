// Package ssh implements `kpaas ssh`: an interactive shell on one instance's
// VM with a PTY, or a command run on every matching instance in parallel.
// It reaches VMs through pkg/agentclient; which instances a deployment has
// comes from a Targets resolver (the state store, wired by the factory).
package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kpaas/kpaas/pkg/agentclient"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Targets lists a deployment's instances as agent targets: name, address,
// pinned host key and the client key to log in with.
type Targets interface {
	Targets(ctx context.Context, deployment string) ([]agentclient.Target, error)
}

// ErrNotWired is returned by a lookup that has no source of instances.
var ErrNotWired = errors.New("finding a deployment's instances needs the state store")

// Options of `kpaas ssh`.
type Options struct {
	IO         *ui.IOStreams
	Targets    func() (Targets, error)
	Deployment string
	Selector   string
	Command    string
	Gateway    agentclient.GatewayFlags
	JSON       bool
	NoPrefix   bool
}

// NewCmdSSH builds `kpaas ssh`. runF replaces the run function in tests.
func NewCmdSSH(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Targets: DefaultTargets(f)}
	cmd := &cobra.Command{
		Use:   "ssh [GROUP[/ID]] [-c COMMAND]",
		Short: "Open a shell on an instance's VM, or run a command on many",
		Long: `Open an interactive shell (with a PTY) on one instance of a deployment, or with
-c run a command on every matching instance in parallel. Output lines are
prefixed with the instance name; kpaas exits non-zero if any instance failed.

Instances are selected as GROUP (all of the group), GROUP/ID (instance UUID or
a unique prefix of it) or GROUP/INDEX. VMs on private networks are reached
through a gateway (--gw-host, --gw-user, --gw-private-key), whose host key
must be in known_hosts.`,
		Example: `  kpaas ssh -d cf api/0
  kpaas ssh -d cf router -c 'uptime'
  kpaas ssh -d cf diego-cell -c 'df -h /var/vcap/data' --json
  kpaas ssh -d cf api/0 --gw-host jumpbox.example.com --gw-user ops --gw-private-key ~/.ssh/jumpbox`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment = f.Globals.Deployment
			opts.JSON = f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if len(args) == 1 {
				opts.Selector = args[0]
			}
			if opts.JSON && opts.Command == "" {
				return cmdutil.FlagErrorf("--json needs -c COMMAND: an interactive shell has no JSON output")
			}
			if runF != nil {
				return runF(opts)
			}
			return sshRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Command, "command", "c", "", "Run `COMMAND` on every matching instance instead of opening a shell")
	fl.BoolVar(&opts.NoPrefix, "no-prefix", false, "Do not prefix output lines with the instance name")
	AddGatewayFlags(cmd, &opts.Gateway)
	return cmd
}

// AddGatewayFlags registers --gw-host, --gw-user, --gw-private-key and --gw-known-hosts.
func AddGatewayFlags(cmd *cobra.Command, g *agentclient.GatewayFlags) {
	fl := cmd.Flags()
	fl.StringVar(&g.Host, "gw-host", "", "Reach the VMs through this SSH gateway (`host`[:port], port 22 by default)")
	fl.StringVar(&g.User, "gw-user", "", "SSH `user` on the gateway")
	fl.StringVar(&g.PrivateKey, "gw-private-key", "", "Private key `file` the gateway accepts")
	fl.StringVar(&g.KnownHosts, "gw-known-hosts", "", "known_hosts `file` holding the gateway's host key (default ~/.ssh/known_hosts)")
}

// Resolve returns the targets of opts' deployment matching selector, with
// the gateway set.
func Resolve(ctx context.Context, targets func() (Targets, error), deployment, selector string, gw agentclient.GatewayFlags) ([]agentclient.Target, error) {
	g, err := gw.Gateway()
	if err != nil {
		return nil, err
	}
	r, err := targets()
	if err != nil {
		return nil, err
	}
	all, err := r.Targets(ctx, deployment)
	if err != nil {
		return nil, fmt.Errorf("listing the instances of %s: %w", deployment, err)
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("deployment %s has no instances", deployment)
	}
	sel, err := agentclient.Select(all, selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", deployment, err)
	}
	out := make([]agentclient.Target, len(sel))
	for i, t := range sel {
		if g != nil {
			t.Gateway = g
		}
		out[i] = t
	}
	return out, nil
}

type resultView struct {
	Instance string `json:"instance"`
	ExitCode int    `json:"exit_code"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	Error    string `json:"error,omitempty"`
}

func sshRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	targets, err := Resolve(ctx, opts.Targets, opts.Deployment, opts.Selector, opts.Gateway)
	if err != nil {
		return err
	}
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	if opts.Command == "" {
		if len(targets) != 1 {
			var names []string
			for _, t := range targets {
				names = append(names, t.Name)
			}
			return cmdutil.FlagErrorf("%q matches %d instances (%s): pick one as GROUP/ID, or run a command on all with -c", opts.Selector, len(targets), strings.Join(names, ", "))
		}
		return interactive(ctx, opts, pool.Client(targets[0]))
	}
	return runCommand(ctx, opts, pool, targets)
}

func runCommand(ctx context.Context, opts *Options, pool *agentclient.Pool, targets []agentclient.Target) error {
	results := make([]resultView, len(targets))
	var outMu sync.Mutex
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := resultView{Instance: t.Name}
			var code int
			var err error
			if opts.JSON {
				var out, errOut bytes.Buffer
				code, err = pool.Client(t).Exec(ctx, opts.Command, nil, &out, &errOut)
				res.Stdout, res.Stderr = out.String(), errOut.String()
			} else {
				prefix := t.Name + ": "
				if opts.NoPrefix {
					prefix = ""
				}
				out := &ui.PrefixWriter{W: opts.IO.Out, Prefix: prefix, Mu: &outMu}
				errOut := &ui.PrefixWriter{W: opts.IO.ErrOut, Prefix: prefix, Mu: &outMu}
				var stdin io.Reader
				if len(targets) == 1 && !opts.IO.IsStdinTTY() {
					stdin = opts.IO.In // one instance: it can read what is piped in
				}
				code, err = pool.Client(t).Exec(ctx, opts.Command, stdin, out, errOut)
				out.Flush()
				errOut.Flush()
			}
			res.ExitCode = code
			if err != nil {
				res.Error = err.Error()
			}
			results[i] = res
		}()
	}
	wg.Wait()
	sort.SliceStable(results, func(i, j int) bool { return results[i].Instance < results[j].Instance })
	var failed []string
	for _, r := range results {
		switch {
		case r.Error != "":
			failed = append(failed, fmt.Sprintf("%s (%s)", r.Instance, r.Error))
		case r.ExitCode != 0:
			failed = append(failed, fmt.Sprintf("%s (exit %d)", r.Instance, r.ExitCode))
		}
	}
	if opts.JSON {
		if err := ui.WriteJSON(opts.IO.Out, results); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return cmdutil.ErrCancelled
	}
	if len(failed) > 0 {
		msg := fmt.Errorf("%d of %d instances failed: %s", len(failed), len(results), strings.Join(failed, "; "))
		if opts.JSON {
			fmt.Fprintln(opts.IO.ErrOut, "Error:", msg)
			return &cmdutil.ExitCodeError{Code: cmdutil.ExitError}
		}
		return msg
	}
	return nil
}

// interactive opens a shell with a PTY when stdin is a terminal.
func interactive(ctx context.Context, opts *Options, c *agentclient.Client) error {
	so := agentclient.ShellOptions{Stdin: opts.IO.In, Stdout: opts.IO.Out, Stderr: opts.IO.ErrOut}
	if f, ok := opts.IO.In.(*os.File); ok && opts.IO.IsStdinTTY() {
		fd := int(f.Fd())
		so.Term = os.Getenv("TERM")
		if so.Term == "" {
			so.Term = "xterm"
		}
		if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
			so.Size = agentclient.WindowSize{Width: int(ws.Col), Height: int(ws.Row)}
		}
		restore, err := makeRaw(fd)
		if err != nil {
			return fmt.Errorf("putting the terminal in raw mode: %w", err)
		}
		defer restore()
		resize := make(chan agentclient.WindowSize, 1)
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil {
					select {
					case resize <- agentclient.WindowSize{Width: int(ws.Col), Height: int(ws.Row)}:
					default:
					}
				}
			}
		}()
		so.Resize = resize
	}
	code, err := c.Shell(ctx, so)
	if err != nil {
		return err
	}
	if code != 0 {
		return &cmdutil.ExitCodeError{Code: code}
	}
	return nil
}

// makeRaw puts the terminal fd in raw mode and returns how to restore it.
func makeRaw(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
