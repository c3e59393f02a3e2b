//go:build tools

// Package build pins the etcd server the kubernetes release builds.
package build

import _ "go.etcd.io/etcd/server/v3"
