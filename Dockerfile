# syntax=docker/dockerfile:1
#
# setrelay: a non-root image whose default command is the worker
# (`setrelay run`). It signs with file keys, AWS KMS keys and PKCS#11 (HSM)
# keys: PKCS#11 modules are C libraries, so the binary is a cgo build that
# links only glibc and dlopens the vendor's module (mount it into the
# container and point keys[].pkcs11.module at it). Build with:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t setrelay .
#
# The builder stage caches modules and the build cache in BuildKit cache mounts,
# so rebuilding after a source change does not re-download dependencies.

ARG GO_VERSION=1.26

# bookworm, to match the glibc of distroless/base-debian12 below.
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# Dependencies first: this layer only changes when go.mod/go.sum do.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
# CGO on for PKCS#11 (crypto11 dlopens the module at run time, so only libc
# is linked); -trimpath keeps build paths out of the binary; -s -w drops
# symbol tables.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=1 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/setrelay ./cmd/setrelay \
 && mkdir -p /out/state /out/keys

# distroless/base has glibc (for the cgo build), CA certificates and tzdata
# (needed for TLS to real receivers, token endpoints and KMS) and nothing
# else: no shell, no package manager.
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/setrelay /usr/local/bin/setrelay
# The working directory, owned by the runtime user so that the embedded-NATS
# default (store_dir ./data) works when a volume is mounted here.
COPY --from=build --chown=65532:65532 /out/state /var/lib/setrelay
# Where docker-compose.yml's `keys` volume is mounted. A new named volume takes
# this directory's owner, so the keygen service (this image, as 65532) can
# write the key there and the workers (also 65532) can read it.
COPY --from=build --chown=65532:65532 /out/keys /keys

# 65532 is distroless's "nonroot" user. Keys and configs mounted into the
# container must be readable by it.
USER 65532:65532
WORKDIR /var/lib/setrelay

# 9464 is the ops server (/metrics, /healthz, /readyz, /jwks.json).
EXPOSE 9464

# There is no curl in a distroless image, so the binary checks its own ops
# endpoint. Ops must listen on port 9464 in the container
# (ops.listen: 0.0.0.0:9464, as configs/compose/setrelay.yaml has it).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["setrelay", "healthcheck", "--url", "http://127.0.0.1:9464/healthz"]

ENTRYPOINT ["setrelay"]
CMD ["run", "--config", "/etc/setrelay/config.yaml"]
