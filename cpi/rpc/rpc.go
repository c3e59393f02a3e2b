// Package rpc is BOSH's CPI wire protocol, both ends: the request and response
// documents, and Serve, which answers one request read from stdin with any
// cpi.CPI (what `kpaas cpi NAME` runs). cpi/external is the calling end. It
// imports cpi and the standard library only.
package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/kpaas/kpaas/cpi"
)

// MaxAPIVersion is the highest CPI api_version kpaas speaks.
const MaxAPIVersion = 2

// Request is one CPI call.
type Request struct {
	Method     string            `json:"method"`
	Arguments  []json.RawMessage `json:"arguments"`
	Context    map[string]any    `json:"context"`
	APIVersion int               `json:"api_version,omitempty"`
}

// Response is the answer to one call.
type Response struct {
	Result any        `json:"result"`
	Error  *cpi.Error `json:"error"`
	Log    string     `json:"log"`
}

// RawResponse is a Response whose result is still undecoded.
type RawResponse struct {
	Result json.RawMessage `json:"result"`
	Error  *cpi.Error      `json:"error"`
	Log    string          `json:"log"`
}

// CallContext is what a request's context says about the caller.
type CallContext struct {
	DirectorUUID       string
	RequestID          string
	StemcellAPIVersion int
	APIVersion         int
	Properties         map[string]any // everything else (multi-CPI properties)
}

// ParseContext reads the context block of a request.
func ParseContext(req Request) CallContext {
	cc := CallContext{APIVersion: req.APIVersion, Properties: map[string]any{}}
	if cc.APIVersion == 0 {
		cc.APIVersion = 1
	}
	for k, v := range req.Context {
		switch k {
		case "director_uuid":
			cc.DirectorUUID, _ = v.(string)
		case "request_id":
			cc.RequestID, _ = v.(string)
		case "vm":
			if m, ok := v.(map[string]any); ok {
				if sc, ok := m["stemcell"].(map[string]any); ok {
					if f, ok := sc["api_version"].(float64); ok {
						cc.StemcellAPIVersion = int(f)
					}
				}
			}
		default:
			cc.Properties[k] = v
		}
	}
	return cc
}

// Opener gives the driver that answers a call; it may read the call context
// (multi-CPI properties arrive there).
type Opener func(cc CallContext) (cpi.CPI, error)

// Serve reads one request from in, calls the driver and writes one response
// to out. Driver errors go into the response; Serve returns an error only when
// it cannot write the response.
func Serve(ctx context.Context, open Opener, in io.Reader, out io.Writer) error {
	resp := Response{}
	var req Request
	if err := json.NewDecoder(in).Decode(&req); err != nil {
		resp.Error = &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("Invalid request: %v", err)}
	} else if req.APIVersion > MaxAPIVersion {
		resp.Error = &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("api_version %d is not supported; this CPI speaks up to %d", req.APIVersion, MaxAPIVersion)}
	} else {
		cc := ParseContext(req)
		drv, err := open(cc)
		if err != nil {
			resp.Error = cpi.AsError(fmt.Errorf("opening the cpi: %w", err))
		} else {
			resp.Result, err = Dispatch(ctx, drv, req.Method, req.Arguments, cc.APIVersion)
			resp.Error = cpi.AsError(err)
		}
	}
	if err := json.NewEncoder(out).Encode(resp); err != nil {
		return fmt.Errorf("writing cpi response: %w", err)
	}
	return nil
}

type argReader struct {
	method string
	args   []json.RawMessage
	err    error
}

// get decodes argument i into v; a missing or null optional argument leaves v as is.
func (a *argReader) get(i int, v any, optional bool) {
	if a.err != nil {
		return
	}
	if i >= len(a.args) || string(a.args[i]) == "null" {
		if !optional {
			a.err = &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("%s: argument %d is missing", a.method, i+1)}
		}
		return
	}
	if err := json.Unmarshal(a.args[i], v); err != nil {
		a.err = &cpi.Error{Type: cpi.TypeCpiError, Message: fmt.Sprintf("%s: argument %d: %v", a.method, i+1, err)}
	}
}

// Dispatch calls method on drv with the raw arguments and returns the result
// as it goes on the wire for apiVersion.
func Dispatch(ctx context.Context, drv cpi.CPI, method string, raw []json.RawMessage, apiVersion int) (any, error) {
	a := &argReader{method: method, args: raw}
	switch method {
	case "info":
		info, err := drv.Info(ctx)
		if err == nil && info.APIVersion > MaxAPIVersion {
			info.APIVersion = MaxAPIVersion
		}
		return info, err
	case "create_stemcell":
		var path string
		var props cpi.Props
		a.get(0, &path, false)
		a.get(1, &props, true)
		if a.err != nil {
			return nil, a.err
		}
		return drv.CreateStemcell(ctx, path, props)
	case "delete_stemcell":
		var cid cpi.StemcellCID
		if a.get(0, &cid, false); a.err != nil {
			return nil, a.err
		}
		return nil, drv.DeleteStemcell(ctx, cid)
	case "create_vm":
		var (
			agent    cpi.AgentID
			stemcell cpi.StemcellCID
			props    cpi.Props
			nets     cpi.Networks
			disks    []cpi.DiskCID
			env      cpi.Env
		)
		a.get(0, &agent, false)
		a.get(1, &stemcell, false)
		a.get(2, &props, true)
		a.get(3, &nets, true)
		a.get(4, &disks, true)
		a.get(5, &env, true)
		if a.err != nil {
			return nil, a.err
		}
		vm, got, err := drv.CreateVM(ctx, agent, stemcell, props, nets, disks, env)
		if err != nil {
			return nil, err
		}
		if apiVersion >= 2 {
			return []any{vm, got}, nil
		}
		return vm, nil
	case "delete_vm", "has_vm", "reboot_vm", "get_disks":
		var cid cpi.VMCID
		if a.get(0, &cid, false); a.err != nil {
			return nil, a.err
		}
		switch method {
		case "delete_vm":
			return nil, drv.DeleteVM(ctx, cid)
		case "has_vm":
			return drv.HasVM(ctx, cid)
		case "reboot_vm":
			return nil, drv.RebootVM(ctx, cid)
		default:
			return drv.GetDisks(ctx, cid)
		}
	case "set_vm_metadata":
		var cid cpi.VMCID
		var md cpi.Metadata
		a.get(0, &cid, false)
		a.get(1, &md, true)
		if a.err != nil {
			return nil, a.err
		}
		return nil, drv.SetVMMetadata(ctx, cid, md)
	case "create_disk":
		var size int
		var props cpi.Props
		var vm cpi.VMCID
		a.get(0, &size, false)
		a.get(1, &props, true)
		a.get(2, &vm, true)
		if a.err != nil {
			return nil, a.err
		}
		return drv.CreateDisk(ctx, size, props, vm)
	case "delete_disk", "has_disk":
		var cid cpi.DiskCID
		if a.get(0, &cid, false); a.err != nil {
			return nil, a.err
		}
		if method == "has_disk" {
			return drv.HasDisk(ctx, cid)
		}
		return nil, drv.DeleteDisk(ctx, cid)
	case "attach_disk", "detach_disk":
		var vm cpi.VMCID
		var disk cpi.DiskCID
		a.get(0, &vm, false)
		a.get(1, &disk, false)
		if a.err != nil {
			return nil, a.err
		}
		if method == "detach_disk" {
			return nil, drv.DetachDisk(ctx, vm, disk)
		}
		hint, err := drv.AttachDisk(ctx, vm, disk)
		if err != nil || apiVersion < 2 {
			return nil, err
		}
		return hint, nil
	case "set_disk_metadata":
		var cid cpi.DiskCID
		var md cpi.Metadata
		a.get(0, &cid, false)
		a.get(1, &md, true)
		if a.err != nil {
			return nil, a.err
		}
		return nil, drv.SetDiskMetadata(ctx, cid, md)
	case "resize_disk":
		var cid cpi.DiskCID
		var size int
		a.get(0, &cid, false)
		a.get(1, &size, false)
		if a.err != nil {
			return nil, a.err
		}
		return nil, drv.ResizeDisk(ctx, cid, size)
	case "snapshot_disk":
		var cid cpi.DiskCID
		var md cpi.Metadata
		a.get(0, &cid, false)
		a.get(1, &md, true)
		if a.err != nil {
			return nil, a.err
		}
		return drv.SnapshotDisk(ctx, cid, md)
	case "delete_snapshot":
		var cid cpi.SnapshotCID
		if a.get(0, &cid, false); a.err != nil {
			return nil, a.err
		}
		return nil, drv.DeleteSnapshot(ctx, cid)
	}
	return nil, &cpi.Error{Type: cpi.TypeNotImplemented, Message: fmt.Sprintf("Must call implemented method: %q is not one", method)}
}
