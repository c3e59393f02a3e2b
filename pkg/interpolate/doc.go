// Package interpolate is kpaas's manifest engine, byte-compatible with `bosh int`:
// go-patch ops files (replace, remove, test), ((var)) interpolation with the BOSH CLI's
// rules, variable sources with BOSH precedence (-v, --var-file, -l, --vars-env,
// --vars-store) and the output YAML the BOSH CLI prints (gopkg.in/yaml.v2, sorted keys).
//
// Documents are the values gopkg.in/yaml.v2 decodes into an `any`: map[any]any,
// []any, string, int, float64, bool, nil. The package does no I/O except reading and
// writing a vars store file; commands read the files and hand their bytes in.
// It must not import pkg/cmd or pkg/cli.
package interpolate
