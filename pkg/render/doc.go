// Package render renders BOSH job templates the way the director does, for the
// deploy engine to ship to agents: properties bound from the manifest over job
// spec defaults (section 4.2 of reference/bosh-formats.md), links resolved inside
// one deployment (4.3), the per-instance template context (4.1), and the
// rendered output with its archive, archive SHA-1, configuration_hash and
// template_hashes (4.4).
//
// Templates are Go text/template with the BOSH vocabulary: `p "a.b"`,
// `p "a.b" default`, `if_p "a" "b"`, `link "name"` (with .P, .instances,
// .address), `if_link "name"`, and `spec.address/ip/az/id/index/name/
// deployment/bootstrap/networks`. The template engine is chosen by file
// extension through the Engine interface: `.erb` templates are rendered by an
// ERB engine (package render/erb: ruby following the director's contract;
// erb.NewRenderer registers it); without one they fail with ErrNoEngine.
//
// In Go templates the vocabulary reads:
//
//	port: {{ p "port" }}                      # spec default when the manifest has none
//	name: {{ p "name" "fallback" }}           # explicit default
//	{{ if if_p "tls.cert" }}cert: {{ p "tls.cert" }}{{ end }}   # if_p is a boolean: all set (false counts as set)
//	{{ range (link "db").instances }}{{ .address }}:{{ (link "db").P "port" }} {{ end }}
//	{{ if if_link "cache" }}cache: {{ (link "cache").address }}{{ end }}
//	id: {{ spec.id }} ip: {{ spec.networks.default.ip }} az: {{ spec.az }}
//	{{ json (p "settings") }}  {{ join "," (p "list") }}
//
// `.` is the spec hash too ({{ .address }}), and a key that does not exist is an
// error, so a typo fails the render instead of printing "<no value>". A monit
// file is a Go template unless it carries ERB tags (<%), then it goes to the
// .erb engine, as BOSH renders monit files with ERB.
//
// The package does no network or state I/O; it must not import the state store,
// the engine, agent clients or any CPI.
package render
