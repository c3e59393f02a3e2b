package render

import (
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/kpaas/kpaas/pkg/manifest"
	"github.com/kpaas/kpaas/pkg/release"
)

// JobSource finds a job of a release: an uploaded release tarball
// (release.Tarball.Job) or a release directory (release.Job.Content).
type JobSource interface {
	Job(releaseName, jobName string) (*release.JobContent, ReleaseRef, error)
}

// JobSourceFunc adapts a function to JobSource.
type JobSourceFunc func(releaseName, jobName string) (*release.JobContent, ReleaseRef, error)

// Job implements JobSource.
func (f JobSourceFunc) Job(r, j string) (*release.JobContent, ReleaseRef, error) { return f(r, j) }

// TarballSource serves jobs from read release tarballs, keyed by release name.
func TarballSource(tarballs ...*release.Tarball) JobSource {
	byName := map[string]*release.Tarball{}
	for _, t := range tarballs {
		byName[t.Manifest.Name] = t
	}
	return JobSourceFunc(func(rel, job string) (*release.JobContent, ReleaseRef, error) {
		t, ok := byName[rel]
		if !ok {
			return nil, ReleaseRef{}, fmt.Errorf("release '%s' is not uploaded", rel)
		}
		c := t.Job(job)
		if c == nil {
			return nil, ReleaseRef{}, fmt.Errorf("release '%s/%s' has no job '%s'", rel, t.Manifest.Version, job)
		}
		return c, ReleaseRef{Name: rel, Version: t.Manifest.Version}, nil
	})
}

// DeploymentInput is a deployment to render: the manifest after interpolation
// (addons already placed into its groups), the instances planned for each group,
// and where jobs come from.
type DeploymentInput struct {
	Manifest    *manifest.Manifest
	CloudConfig *manifest.CloudConfig // for the default network of each group (vip networks never are); may be nil
	Instances   map[string][]Instance // instance group name -> its instances
	Jobs        JobSource
	Domain      string // DNS root domain, "bosh" when empty
	// Remote finds the shared links of another deployment (see LinkDeployment.Remote).
	Remote func(deployment string) ([]*Link, error)
}

// DeploymentOutput is a rendered deployment.
type DeploymentOutput struct {
	Links     *Resolution
	Instances map[string][]*RenderedInstance // instance group name -> rendered instances, in input order
}

// RenderDeployment binds every job's properties, resolves the links of the
// deployment and renders every instance (in parallel, one worker per CPU). It
// returns every problem at once: unknown jobs, bad properties, links nobody
// provides, templates that fail (naming job, instance group and property).
func (r *Renderer) RenderDeployment(in DeploymentInput) (*DeploymentOutput, error) {
	m := in.Manifest
	ld := LinkDeployment{Name: m.Name, Domain: in.Domain, Remote: in.Remote}
	type groupJobs struct {
		group *manifest.InstanceGroup
		jobs  []JobInput
	}
	var groups []groupJobs
	var errs []error
	for gi := range m.InstanceGroups {
		g := &m.InstanceGroups[gi]
		lg := LinkGroup{Name: g.Name, Instances: in.Instances[g.Name]}
		for _, n := range g.Networks {
			lg.Networks = append(lg.Networks, n.Name)
		}
		if lg.DefaultNetwork = g.DefaultNetworkFor("addressable", in.CloudConfig); lg.DefaultNetwork == "" {
			lg.DefaultNetwork = g.DefaultNetworkFor("gateway", in.CloudConfig)
		}
		gj := groupJobs{group: g}
		for ji := range g.Jobs {
			j := &g.Jobs[ji]
			content, ref, err := in.Jobs.Job(j.Release, j.Name)
			if err != nil {
				errs = append(errs, fmt.Errorf("instance group '%s' job '%s': %w", g.Name, j.Name, err))
				continue
			}
			props, err := BindProperties(content.Spec, SourcesFor(m, g, j))
			if err != nil {
				errs = append(errs, fmt.Errorf("instance group '%s': %w", g.Name, err))
				continue
			}
			lg.Jobs = append(lg.Jobs, LinkJob{Name: j.Name, Release: j.Release, Spec: content.Spec, Manifest: *j, Properties: props})
			gj.jobs = append(gj.jobs, JobInput{Content: content, Release: ref, Properties: props})
		}
		ld.Groups = append(ld.Groups, lg)
		groups = append(groups, gj)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	res, err := ResolveLinks(ld)
	if err != nil {
		return nil, err
	}
	out := &DeploymentOutput{Links: res, Instances: map[string][]*RenderedInstance{}}
	type task struct {
		group string
		i     int
		inst  Instance
		jobs  []JobInput
	}
	var tasks []task
	for _, gj := range groups {
		for i := range gj.jobs {
			key := JobKey{gj.group.Name, gj.jobs[i].Content.Name}
			gj.jobs[i].Links = res.Consumed[key]
			gj.jobs[i].Provides = res.Provided[key]
		}
		insts := in.Instances[gj.group.Name]
		out.Instances[gj.group.Name] = make([]*RenderedInstance, len(insts))
		for i, inst := range insts {
			if inst.Deployment == "" {
				inst.Deployment = m.Name
			}
			if inst.Group == "" {
				inst.Group = gj.group.Name
			}
			tasks = append(tasks, task{group: gj.group.Name, i: i, inst: inst, jobs: gj.jobs})
		}
	}
	taskErrs := make([]error, len(tasks)) // by task, so errors come out in group and index order
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range next {
				t := tasks[n]
				ri, err := r.RenderInstance(t.inst, t.jobs)
				if err != nil {
					taskErrs[n] = err
					continue
				}
				out.Instances[t.group][t.i] = ri // distinct slots: no lock needed
			}
		}()
	}
	for n := range tasks {
		next <- n
	}
	close(next)
	wg.Wait()
	for _, err := range taskErrs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, dedupe(errs)
	}
	return out, nil
}

// dedupe folds template errors that differ only by instance (a property missing
// for a whole group) into the first one, counting the others.
func dedupe(errs []error) error {
	var flat []error
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		flat = append(flat, err)
	}
	for _, e := range errs {
		walk(e)
	}
	type key struct{ group, job, tmpl, msg string }
	first := map[key]*TemplateError{}
	more := map[key]int{}
	var out []error
	for _, e := range flat {
		var te *TemplateError
		if !errors.As(e, &te) {
			out = append(out, e)
			continue
		}
		k := key{te.Group, te.Job, te.Template, te.Err.Error()}
		if _, seen := first[k]; seen {
			more[k]++
			continue
		}
		first[k] = te
		out = append(out, te)
	}
	for i, e := range out {
		if te, ok := e.(*TemplateError); ok {
			if n := more[key{te.Group, te.Job, te.Template, te.Err.Error()}]; n > 0 {
				cp := *te
				cp.Others = n
				out[i] = &cp
			}
		}
	}
	return errors.Join(out...)
}
