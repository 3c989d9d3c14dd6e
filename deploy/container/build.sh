#!/usr/bin/env bash
# Build driftwarden's image with podman from Debian packages alone (no image registry needed).
#
#   deploy/container/build.sh [--variant cpu|cuda] [--tag NAME:TAG] [--torch-index URL]
#
# 1. the base: `debootstrap --variant=minbase bookworm`, imported as localhost/driftwarden-base:bookworm
#    (the tarball is cached in $CACHE_DIR, the image in podman's store: later builds skip this);
# 2. staged into build/container/: the image's requirements, torch's CPU wheel (from pip's configured
#    find-links, or PyTorch's CPU index), kubectl (.tools/, fetched by deploy/local/install.sh) and pip's CA
#    bundle ($CA_BUNDLE, default $PIP_CERT or the system's) for the install step;
# 3. `podman build` of deploy/container/Containerfile, which runs deploy/local/install.sh.
# Prints the image's name last. Runs as root (podman with runc, as DESIGN.md says works here).
set -euo pipefail
cd "$(dirname "$0")/../.."
VARIANT=cpu
TAG=""
TORCH_INDEX=""
while [ $# -gt 0 ]; do
  case "$1" in
    --variant) VARIANT="$2"; shift 2 ;;
    --tag) TAG="$2"; shift 2 ;;
    --torch-index) TORCH_INDEX="$2"; shift 2 ;;
    *) echo "unknown argument $1 (use --variant cpu|cuda, --tag NAME:TAG, --torch-index URL)" >&2; exit 2 ;;
  esac
done
case "$VARIANT" in cpu|cuda) ;; *) echo "--variant is cpu or cuda, not $VARIANT" >&2; exit 2 ;; esac
if [ "$VARIANT" = "cpu" ] && [ -n "$TORCH_INDEX" ]; then
  echo "--torch-index is for --variant cuda (the cpu variant takes torch's CPU build)" >&2; exit 2
fi
# pip of the project's environment (Debian's python3 has no pip module without python3-pip).
PIP_PY=".venv/bin/python"; [ -x "$PIP_PY" ] || PIP_PY=python3
for tool in podman runc; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install podman runc debootstrap (Debian)" >&2; exit 3; }
done
VERSION="$(python3 -c "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))['project']['version'])")"
SUFFIX=""; [ "$VARIANT" = "cuda" ] && SUFFIX="-cuda"
TAG="${TAG:-localhost/driftwarden:${VERSION}${SUFFIX}}"
CACHE_DIR="${CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/driftwarden-container}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE=localhost/driftwarden-base:bookworm
export CONTAINERS_CONF="$PWD/deploy/container/containers.conf"
PODMAN=(podman --runtime runc)

if ! "${PODMAN[@]}" image exists "$BASE"; then
  mkdir -p "$CACHE_DIR"
  if [ ! -s "$CACHE_DIR/bookworm-minbase.tar" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 3; }
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    echo "[base] debootstrap --variant=minbase bookworm from $MIRROR (about a minute) ..."
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
      || { echo "debootstrap failed; its log: $CACHE_DIR/debootstrap.log" >&2; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . >"$CACHE_DIR/bookworm-minbase.tar.part"
    mv "$CACHE_DIR/bookworm-minbase.tar.part" "$CACHE_DIR/bookworm-minbase.tar"
    rm -rf "$root"
  fi
  echo "[base] importing $BASE ..."
  "${PODMAN[@]}" import --quiet "$CACHE_DIR/bookworm-minbase.tar" "$BASE" >/dev/null
fi

echo "[stage] torch wheel and kubectl into build/container/ ..."
rm -rf build/container && mkdir -p build/container/wheels
if [ "$VARIANT" = "cpu" ]; then
  if ! "$PIP_PY" -m pip download --quiet --no-deps --only-binary=:all: -d build/container/wheels 'torch==2.13.0+cpu' 2>/dev/null; then
    "$PIP_PY" -m pip download --quiet --no-deps --only-binary=:all: -d build/container/wheels \
      --index-url https://download.pytorch.org/whl/cpu 'torch==2.13.0+cpu'
  fi
fi
# pip inside the build trusts the CAs this host trusts (a proxy's own CA, where one intercepts
# TLS): pip's bundle ($PIP_CERT) or the system's, staged for the build stage only (the final
# image does not hold it).
CA_BUNDLE="${CA_BUNDLE:-${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}}"
if [ -n "$CA_BUNDLE" ] && [ -f "$CA_BUNDLE" ]; then
  cp "$CA_BUNDLE" build/container/ca-bundle.crt
else
  : > build/container/ca-bundle.crt  # none: pip's own
fi
# The image's requirements (pyproject.toml's dependencies and the image's extras) and the base
# model: the dependency layer is built from these files (and the wheel and CA bundle) alone, so
# the builder reuses it while they are unchanged.
INSTALL_PROFILE=image-requirements bash deploy/local/install.sh > build/container/requirements.txt
INSTALL_PROFILE=image-base-model bash deploy/local/install.sh > build/container/base-model.txt
KUBECTL="${KUBECTL:-.tools/kubectl/kubectl}"
[ -x "$KUBECTL" ] || { echo "kubectl is missing at $KUBECTL: run deploy/local/install.sh (it fetches it into .tools/)" >&2; exit 3; }
cp "$KUBECTL" build/container/kubectl

echo "[build] $TAG (variant $VARIANT) ..."
"${PODMAN[@]}" build --network host --format docker -f deploy/container/Containerfile \
  --build-arg VARIANT="$VARIANT" --build-arg TORCH_INDEX="$TORCH_INDEX" -t "$TAG" .
echo "$TAG"
