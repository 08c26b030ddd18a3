# syntax=docker/dockerfile:1
#
# One image for the three binaries: /ledger (the entrypoint), /gatekeeper and
# /licensegen. Build and run:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t licenseledger/ledger .
#   docker run licenseledger/ledger                                 # ledger serve
#   docker run licenseledger/ledger migrate up                      # any ledger command
#   docker run --entrypoint /gatekeeper licenseledger/ledger        # the gatekeeper
#   docker run --entrypoint /licensegen licenseledger/ledger --help # the vendor tool
#
# `--entrypoint` (Kubernetes: `command`) also drops the default `serve`
# argument, so the gatekeeper and licensegen see only their own arguments.
# The final stage is distroless/static: no shell, no package manager, user
# 65532 (nonroot). See docs/deploy.md.

ARG GO_VERSION=1.27.3

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum changes.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
# The commit (the context holds no .git to read it from):
# docker build --build-arg REVISION=$(git rev-parse HEAD) …
ARG REVISION=
ARG TARGETOS
ARG TARGETARCH
# Static binaries (no cgo), reproducible paths, no symbol tables; the version
# and commit are what `--version` prints and *_build_info exports, and the
# version is what ledger.started records.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X github.com/licenseledger/ledger/internal/buildinfo.Revision=${REVISION}" \
      -o /out/ ./cmd/ledger ./cmd/gatekeeper ./cmd/licensegen
# The single-node default keeps its state in /data (embedded NATS store,
# seeds, admin token): an empty directory the runtime user owns, so a named
# volume mounted there starts out writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="licenseledger" \
      org.opencontainers.image.source="https://github.com/licenseledger/ledger" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/ledger /out/gatekeeper /out/licensegen /
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATA_DIR=/data
WORKDIR /data
USER 65532:65532
# The API (LEDGER_LISTEN), the embedded NATS (LEDGER_NATS_LISTEN), and the
# gatekeeper's proxy, /authz and admin listeners. Every default binds to
# loopback: set the *_LISTEN variables to publish them.
EXPOSE 8080 4223 8081 8082 9091
ENTRYPOINT ["/ledger"]
CMD ["serve"]
