// Package logs implements `kpaas logs`: download a tarball of each
// instance's /var/vcap/sys/log, or tail the logs of many instances live.
package logs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/agent/protocol"
	"github.com/kpaas/kpaas/pkg/agentclient"
	sshcmd "github.com/kpaas/kpaas/pkg/cmd/ssh"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Targets lists a deployment's instances (see pkg/cmd/ssh).
type Targets = sshcmd.Targets

// Options of `kpaas logs`.
type Options struct {
	IO         *ui.IOStreams
	Targets    func() (Targets, error)
	Now        func() time.Time
	Deployment string
	Selector   string
	Jobs       []string
	Follow     bool
	Num        int
	Dir        string
	Gateway    agentclient.GatewayFlags
	JSON       bool
}

// NewCmdLogs builds `kpaas logs`.
func NewCmdLogs(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Now: f.Now, Targets: sshcmd.DefaultTargets(f)}
	cmd := &cobra.Command{
		Use:   "logs [GROUP[/ID]] [--job JOB] [--follow] [--num N] [--dir DIR]",
		Short: "Download or tail instances' logs",
		Long: `Without --follow or --num, download a tarball of /var/vcap/sys/log (or of the
--job folders) from every matching instance into --dir, one file per instance
named DEPLOYMENT.GROUP.ID.TIMESTAMP.tgz; the paths are printed on stdout.

With --num N, print the last N lines of every log file; with --follow, keep
printing new lines until Ctrl-C. Lines are prefixed "INSTANCE: FILE: ".`,
		Example: `  kpaas logs -d cf
  kpaas logs -d cf api/0 --job cloud_controller_ng --dir /tmp/logs
  kpaas logs -d cf router --follow
  kpaas logs -d cf diego-cell --num 50 --job rep`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			if len(args) == 1 {
				opts.Selector = args[0]
			}
			if opts.Num < 0 {
				return cmdutil.FlagErrorf("--num must be 0 or more, not %d", opts.Num)
			}
			if opts.JSON && (opts.Follow || opts.Num > 0) {
				return cmdutil.FlagErrorf("--json applies to downloads, not to --follow or --num")
			}
			if runF != nil {
				return runF(opts)
			}
			return logsRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&opts.Jobs, "job", nil, "Only the logs of `JOB` (repeatable)")
	fl.BoolVarP(&opts.Follow, "follow", "f", false, "Print new log lines as they are written, until Ctrl-C")
	fl.IntVar(&opts.Num, "num", 0, "Print the last `N` lines of each log file (with --follow: default 10)")
	fl.StringVar(&opts.Dir, "dir", ".", "Download tarballs into `DIR`")
	sshcmd.AddGatewayFlags(cmd, &opts.Gateway)
	return cmd
}

type downloadView struct {
	Instance string `json:"instance"`
	Path     string `json:"path,omitempty"`
	Bytes    int64  `json:"bytes"`
	Error    string `json:"error,omitempty"`
}

func logsRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	targets, err := sshcmd.Resolve(ctx, opts.Targets, opts.Deployment, opts.Selector, opts.Gateway)
	if err != nil {
		return err
	}
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	if opts.Follow || opts.Num > 0 {
		return tail(ctx, opts, pool, targets)
	}
	return download(ctx, opts, pool, targets)
}

func download(ctx context.Context, opts *Options, pool *agentclient.Pool, targets []agentclient.Target) error {
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return fmt.Errorf("creating --dir: %w", err)
	}
	stamp := opts.Now().UTC().Format("20060102-150405")
	views := make([]downloadView, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := downloadView{Instance: t.Name}
			id := t.ID
			if id == "" {
				id = fmt.Sprint(t.Index)
			}
			name := fmt.Sprintf("%s.%s.%s.%s.tgz", opts.Deployment, t.Group, id, stamp)
			path := filepath.Join(opts.Dir, name)
			n, err := fetch(ctx, pool.Client(t), opts.Jobs, path)
			v.Bytes = n
			if err != nil {
				v.Error = err.Error()
			} else {
				v.Path = path
			}
			views[i] = v
		}()
	}
	wg.Wait()
	sort.SliceStable(views, func(i, j int) bool { return views[i].Instance < views[j].Instance })
	var failed []string
	for _, v := range views {
		if v.Error != "" {
			failed = append(failed, v.Instance+": "+v.Error)
			continue
		}
		if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "Downloaded the logs of %s (%d bytes)\n", v.Instance, v.Bytes)
			fmt.Fprintln(opts.IO.Out, v.Path)
		}
	}
	if opts.JSON {
		if err := ui.WriteJSON(opts.IO.Out, views); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return cmdutil.ErrCancelled
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d log downloads failed: %s", len(failed), len(views), strings.Join(failed, "; "))
	}
	return nil
}

// fetch writes one instance's logs tarball atomically.
func fetch(ctx context.Context, c *agentclient.Client, jobs []string, path string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	cw := &countWriter{w: tmp}
	err = c.FetchLogs(ctx, jobs, cw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return cw.n, err
	}
	return cw.n, os.Rename(tmp.Name(), path)
}

type countWriter struct {
	w interface{ Write([]byte) (int, error) }
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func tail(ctx context.Context, opts *Options, pool *agentclient.Pool, targets []agentclient.Target) error {
	num := opts.Num
	if num == 0 {
		num = 10
	}
	var mu sync.Mutex
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &ui.PrefixWriter{W: opts.IO.Out, Prefix: t.Name + ": ", Mu: &mu}
			err := pool.Client(t).TailLogs(ctx, protocol.TailLogsRequest{Jobs: opts.Jobs, Num: num, Follow: opts.Follow}, w)
			w.Flush()
			if err != nil && !errors.Is(err, context.Canceled) {
				mu.Lock()
				fmt.Fprintf(opts.IO.ErrOut, "%s: %v\n", t.Name, err)
				mu.Unlock()
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	var failed int
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d instances could not be tailed", failed, len(targets))
	}
	return nil
}
