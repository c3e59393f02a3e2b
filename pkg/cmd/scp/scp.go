// Package scp implements `kpaas scp`: copy files to or from instances' VMs
// over SFTP on the agent's SSH connection.
package scp

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/pkg/sftp"
	"github.com/spf13/cobra"

	"github.com/kpaas/kpaas/pkg/agentclient"
	sshcmd "github.com/kpaas/kpaas/pkg/cmd/ssh"
	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/ui"
)

// Targets lists a deployment's instances (see pkg/cmd/ssh).
type Targets = sshcmd.Targets

// Options of `kpaas scp`.
type Options struct {
	IO         *ui.IOStreams
	Targets    func() (Targets, error)
	Deployment string
	Source     string
	Dest       string
	Recursive  bool
	Gateway    agentclient.GatewayFlags
	JSON       bool
}

// NewCmdSCP builds `kpaas scp`.
func NewCmdSCP(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Targets: sshcmd.DefaultTargets(f)}
	cmd := &cobra.Command{
		Use:   "scp [-r] SOURCE DESTINATION",
		Short: "Copy files to or from instances' VMs",
		Long: `Copy files between this machine and instances of a deployment. One side is
GROUP[/ID]:PATH. Uploads go to every matching instance in parallel; downloads
from several instances land in DESTINATION/<group>/<id>/.`,
		Example: `  kpaas scp -d cf ./fix.sh api:/tmp/fix.sh
  kpaas scp -d cf api/0:/var/vcap/jobs/api/config/app.yml .
  kpaas scp -d cf -r router:/var/vcap/sys/log/gorouter ./router-logs`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Deployment, opts.JSON = f.Globals.Deployment, f.Globals.JSON
			opts.Source, opts.Dest = args[0], args[1]
			if opts.Deployment == "" {
				return cmdutil.FlagErrorf("a deployment is required: pass -d NAME")
			}
			_, _, srcRemote := remote(opts.Source)
			_, _, dstRemote := remote(opts.Dest)
			if srcRemote == dstRemote {
				return cmdutil.FlagErrorf("exactly one of SOURCE and DESTINATION must be an instance path GROUP[/ID]:PATH")
			}
			if runF != nil {
				return runF(opts)
			}
			return scpRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Recursive, "recursive", "r", false, "Copy directories recursively")
	sshcmd.AddGatewayFlags(cmd, &opts.Gateway)
	return cmd
}

// remote splits GROUP[/ID]:PATH; a local path (with no colon before the
// first slash, or starting with . or /) is not remote.
func remote(arg string) (selector, p string, ok bool) {
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg, false
	}
	sel, p, found := strings.Cut(arg, ":")
	if !found || sel == "" {
		return "", arg, false
	}
	return sel, p, true
}

type copyView struct {
	Instance    string `json:"instance"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Bytes       int64  `json:"bytes"`
	Error       string `json:"error,omitempty"`
}

func scpRun(ctx context.Context, opts *Options) error {
	if ctx == nil {
		ctx = context.Background()
	}
	upload := true
	sel, rpath, isRemote := remote(opts.Dest)
	if !isRemote {
		upload = false
		sel, rpath, _ = remote(opts.Source)
	}
	targets, err := sshcmd.Resolve(ctx, opts.Targets, opts.Deployment, sel, opts.Gateway)
	if err != nil {
		return err
	}
	pool := agentclient.NewPool(agentclient.Options{})
	defer pool.Close()
	views := make([]copyView, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := copyView{Instance: t.Name}
			sc, err := pool.Client(t).SFTP(ctx)
			if err == nil {
				if upload {
					v.Source, v.Destination = opts.Source, rpath
					v.Bytes, err = putPath(sc, opts.Source, rpath, opts.Recursive)
				} else {
					dst := opts.Dest
					if len(targets) > 1 {
						dst = filepath.Join(opts.Dest, t.Group, t.ID)
						os.MkdirAll(dst, 0o755)
					}
					v.Source, v.Destination = rpath, dst
					v.Bytes, err = getPath(sc, rpath, dst, opts.Recursive)
				}
				sc.Close()
			}
			if err != nil {
				v.Error = err.Error()
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
		} else if !opts.JSON {
			fmt.Fprintf(opts.IO.ErrOut, "%s: copied %s to %s (%d bytes)\n", v.Instance, v.Source, v.Destination, v.Bytes)
		}
	}
	if opts.JSON {
		if err := ui.WriteJSON(opts.IO.Out, views); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d copies failed: %s", len(failed), len(views), strings.Join(failed, "; "))
	}
	return nil
}

// putPath copies local src to remote dst (into dst when it is a directory).
func putPath(sc *sftp.Client, src, dst string, recursive bool) (int64, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return 0, err
	}
	if rfi, err := sc.Stat(dst); err == nil && rfi.IsDir() {
		dst = path.Join(dst, filepath.Base(src))
	}
	if !fi.IsDir() {
		return putFile(sc, src, dst, fi.Mode())
	}
	if !recursive {
		return 0, fmt.Errorf("%s is a directory: pass -r", src)
	}
	var total int64
	err = filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := path.Join(dst, filepath.ToSlash(rel))
		if fi.IsDir() {
			return sc.MkdirAll(target)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		n, err := putFile(sc, p, target, fi.Mode())
		total += n
		return err
	})
	return total, err
}

func putFile(sc *sftp.Client, src, dst string, mode os.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := sc.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", dst, err)
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("writing %s: %w", dst, err)
	}
	return n, sc.Chmod(dst, mode.Perm())
}

// getPath copies remote src to local dst (into dst when it is a directory).
func getPath(sc *sftp.Client, src, dst string, recursive bool) (int64, error) {
	fi, err := sc.Stat(src)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src, err)
	}
	if lfi, err := os.Stat(dst); err == nil && lfi.IsDir() {
		dst = filepath.Join(dst, path.Base(src))
	}
	if !fi.IsDir() {
		return getFile(sc, src, dst, fi.Mode())
	}
	if !recursive {
		return 0, fmt.Errorf("%s is a directory: pass -r", src)
	}
	var total int64
	w := sc.Walk(src)
	for w.Step() {
		if w.Err() != nil {
			return total, w.Err()
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(w.Path(), src), "/")
		target := filepath.Join(dst, filepath.FromSlash(rel))
		if w.Stat().IsDir() {
			if err := os.MkdirAll(target, 0o755); err != nil {
				return total, err
			}
			continue
		}
		if !w.Stat().Mode().IsRegular() {
			continue
		}
		n, err := getFile(sc, w.Path(), target, w.Stat().Mode())
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func getFile(sc *sftp.Client, src, dst string, mode os.FileMode) (int64, error) {
	in, err := sc.Open(src)
	if err != nil {
		return 0, fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp := dst + ".kpaas-partial"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode.Perm()|0o200)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return n, fmt.Errorf("reading %s: %w", src, err)
	}
	return n, os.Rename(tmp, dst)
}
