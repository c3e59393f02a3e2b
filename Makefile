# kpaas build, test and benchmark targets. `make test` is what CI runs.
GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
GOFMT    ?= $(dir $(GO))gofmt
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/kpaas/kpaas/pkg/cli.Version=$(VERSION)
BIN      := bin
PKGS     := ./...

.PHONY: all build test unit e2e bench lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kpaas ./cmd/kpaas
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/kpaas-agent ./cmd/kpaas-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/kpaas-cpi-vsphere ./cmd/kpaas-cpi-vsphere

# test: lint, then every package's tests (unit, real-part and compat tests;
# those needing ../shared or root skip with a one-line reason where absent).
# The e2e tests run after the others, not beside them: their local-cloud VMs
# would show up in cpi/local's host-wide leak checks.
NOE2E    = $$($(GO) list $(PKGS) | grep -v /e2e)
test: lint build
	$(GO) test -count=1 -timeout 30m $(NOE2E)
	$(GO) test -count=1 -timeout 40m ./e2e/...

unit:
	$(GO) test -short -count=1 $(PKGS)

e2e: build
	$(GO) test -count=1 -v ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(NOE2E)
	$(GO) test -run '^$$' -bench . -benchmem ./e2e/...

lint:
	@out=$$($(GOFMT) -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf $(BIN)

# quickstart: as root on Debian, install what is needed, build the stemcell and
# the releases and deploy kpaas-lite on the local cloud (scripts/quickstart.sh).
.PHONY: quickstart releases kubernetes-release
quickstart:
	GO=$(GO) sh scripts/quickstart.sh

# releases: fetch the Debian .debs the releases package (checked against
# config/blobs.yml) and build the app's binary; `kpaas upload-release` does the rest.
releases:
	sh scripts/sync-debs.sh releases/haproxy
	sh scripts/sync-debs.sh releases/postgres
	sh scripts/sync-debs.sh releases/registry
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '-s -w' -o releases/registry/src/registry-htpasswd/bin/registry-htpasswd ./releases/registry/src/registry-htpasswd
	CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '-s -w' -o releases/kpaas-app/src/kpaas-app/bin/kpaas-app ./releases/kpaas-app/src/kpaas-app

# kubernetes-release: build releases/kubernetes' binaries (Kubernetes, etcd,
# containerd from the pinned Go modules; about 6 minutes from a cold Go build
# cache, nothing when up to date) and fetch its Debian .debs.
kubernetes-release:
	GO=$(GO) sh scripts/build-kubernetes.sh
