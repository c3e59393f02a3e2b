// Package interpolate is kpaas's manifest engine, byte-compatible with `bosh int`:
// go-patch ops files (replace, remove, test), ((var)) interpolation with the BOSH CLI's
// rules, variable sources with BOSH precedence (-v, --var-file, -l, --vars-env,
// --vars-store) and the output YAML the BOSH CLI prints (gopkg.in/yaml.v2, sorted keys).
//
// Documents are the values gopkg.in/yaml.v2 decodes into an `any`: map[any]any,
// []any, string, int, float64, bool, nil. Files are read through the read function
// callers give (Inputs.Load, ReadVarFile); the only file it opens itself is a vars store
// (OpenStore, Store.Save). Request/Evaluate/Result is the API deploy and the config
// commands reuse. It must not import pkg/cmd or pkg/cli.
package interpolate
