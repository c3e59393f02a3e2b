package converge

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/kpaas/kpaas/pkg/cmdutil"
	"github.com/kpaas/kpaas/pkg/health"
	"github.com/kpaas/kpaas/pkg/state"
	"github.com/kpaas/kpaas/pkg/ui"
)

// ResurrectionOptions of `kpaas update-resurrection`.
type ResurrectionOptions struct {
	IO         *ui.IOStreams
	Factory    *cmdutil.Factory
	On         bool
	Deployment string
	Groups     []string
	JSON       bool
}

// NewCmdUpdateResurrection builds `kpaas update-resurrection`.
func NewCmdUpdateResurrection(f *cmdutil.Factory, runF func(*ResurrectionOptions) error) *cobra.Command {
	opts := &ResurrectionOptions{IO: f.IO, Factory: f}
	cmd := &cobra.Command{
		Use:   "update-resurrection on|off [-d DEP] [--instance-group G]...",
		Short: "Turn resurrection (kpaas monitor and converge remediating) on or off, globally or per deployment and group",
		Long: `Without -d, switch resurrection globally (BOSH's update-resurrection: a pause that wins over
every rule). With -d (and optionally --instance-group), add or replace the rule for that
deployment (and groups) in the resurrection config, BOSH's rules format:

  enabled: true
  rules:
  - enabled: false
    include: {deployments: [db], instance_groups: [pg]}

When no rule matches, resurrection is on; a matching rule with enabled: false turns it off.
The config is versioned like the others (` + "`kpaas configs --type resurrection`" + `).`,
		Example: `  kpaas update-resurrection off
  kpaas update-resurrection off -d db --instance-group pg
  kpaas update-resurrection on -d db`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || (args[0] != "on" && args[0] != "off") {
				return cmdutil.FlagErrorf("expected on or off")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.On, opts.Deployment, opts.JSON = args[0] == "on", f.Globals.Deployment, f.Globals.JSON
			if len(opts.Groups) > 0 && opts.Deployment == "" {
				return cmdutil.FlagErrorf("--instance-group needs -d DEP")
			}
			if runF != nil {
				return runF(opts)
			}
			return resurrectionRun(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringArrayVar(&opts.Groups, "instance-group", nil, "Only this instance `GROUP` of the deployment (repeatable)")
	return cmd
}

// UpdateRules applies on/off for dep and groups ("" dep: globally) to r.
func UpdateRules(r health.Resurrection, on bool, dep string, groups []string) health.Resurrection {
	if dep == "" {
		v := on
		r.Enabled = &v
		return r
	}
	sel := &health.Selector{Deployments: []string{dep}, InstanceGroups: groups}
	same := func(s *health.Selector) bool {
		return s != nil && fmt.Sprint(s.Deployments) == fmt.Sprint(sel.Deployments) && fmt.Sprint(s.InstanceGroups) == fmt.Sprint(sel.InstanceGroups)
	}
	var rules []health.Rule
	for _, x := range r.Rules {
		if x.Exclude == nil && same(x.Include) {
			continue
		}
		// Turning a whole deployment on also drops its group rules.
		if on && len(groups) == 0 && x.Include != nil && fmt.Sprint(x.Include.Deployments) == fmt.Sprint([]string{dep}) {
			continue
		}
		rules = append(rules, x)
	}
	if !on {
		rules = append(rules, health.Rule{Enabled: false, Include: sel})
	}
	r.Rules = rules
	return r
}

func resurrectionRun(ctx context.Context, opts *ResurrectionOptions) error {
	st, err := opts.Factory.OpenState(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	cur, err := loadRules(ctx, st)
	if err != nil {
		return err
	}
	next := UpdateRules(cur, opts.On, opts.Deployment, opts.Groups)
	b, err := yaml.Marshal(next)
	if err != nil {
		return err
	}
	c, changed, err := st.SaveConfig(ctx, state.Config{Type: state.ResurrectionConfig, Name: state.DefaultConfigName, Content: string(b)})
	if err != nil {
		return fmt.Errorf("saving the resurrection config: %w", err)
	}
	if opts.JSON {
		return ui.WriteJSON(opts.IO.Out, map[string]any{"config": next, "version": c.Version, "changed": changed})
	}
	what := "globally"
	if opts.Deployment != "" {
		what = "for deployment " + opts.Deployment
		if len(opts.Groups) > 0 {
			what += fmt.Sprintf(" instance group(s) %v", opts.Groups)
		}
	}
	state := "off"
	if opts.On {
		state = "on"
	}
	fmt.Fprintf(opts.IO.ErrOut, "Resurrection %s %s (resurrection config version %d).\n", state, what, c.Version)
	return nil
}
