// Package release owns BOSH releases as kpaas reads and writes them: release
// source directories (jobs/<job>/{spec,monit,templates}, packages/<pkg>/{spec,
// packaging}, src/, blobs/ with config/blobs.yml, config/final.yml, LICENSE and
// NOTICE files), job/package/license fingerprints computed exactly as bosh-cli
// computes them (so they dedupe with existing .final_builds), release tarballs
// (release.MF and inner .tgz archives, sha256 digests), dev and final versions
// with their indices, digest strings (bare SHA-1 or algo:hex;...), and the
// package dependency order that compilation follows.
//
// Everything here is file and byte work on the local machine: it must not import
// the state store, the engine, agent clients or any CPI.
package release
