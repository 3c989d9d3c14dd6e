"""The Helm chart (deploy/helm/driftwarden): it lints, renders objects Kubernetes' own schemas
accept, gives every process an environment the real settings accept, never renders a secret, and
carries up-to-date copies of the dashboards and the Prometheus rules.

helm comes from ``.tools/helm`` (``deploy/local/install.sh`` fetches it) or the PATH.
"""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from driftwarden.core.settings import ENV_PREFIX, SINK_ONLY_SETTINGS, Settings
from driftwarden.tests.unit.deploy.settings_env import load_settings_with

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "driftwarden"
PRODUCTION = CHART / "examples" / "values-production.yaml"
#: The Kubernetes version the objects are validated against (a current release).
KUBERNETES = "1.34.0"
#: Kinds of operators (KEDA, Prometheus Operator, Strimzi) whose schemas kubernetes-validate lacks.
CUSTOM_KINDS = {"ScaledObject", "ServiceMonitor", "PrometheusRule", "KafkaTopic"}


def helm() -> str:
    local = ROOT / ".tools" / "helm" / "helm"
    path = str(local) if local.exists() else shutil.which("helm")
    if path is None:
        pytest.fail("helm is missing: run deploy/local/install.sh (it fetches helm into .tools/)")
    return path


def render(*args: str) -> list[dict]:
    done = subprocess.run([helm(), "template", "dw", str(CHART), "--namespace", "llm", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_error(*args: str) -> str:
    done = subprocess.run([helm(), "template", "dw", str(CHART), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, "the chart rendered values it should refuse"
    return done.stderr


def every_option() -> list[str]:
    return ["--set", "otlp.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
            "--set", "metrics.prometheusRule.enabled=true", "--set", "kafkaTopics.enabled=true",
            "--set", "grafana.datasource.enabled=true", "--set", "worker.autoscaling.enabled=true"]


RENDERINGS = {"default values": [], "every option": every_option(), "production example": ["-f", str(PRODUCTION)]}


def containers(objects: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for o in objects if o["kind"] == "Deployment"
            for c in o["spec"]["template"]["spec"]["containers"]}


def secret_variables(model: type[BaseModel] = Settings, prefix: str = ENV_PREFIX) -> set[str]:
    """Every setting that is a secret (SecretStr), as its environment variable."""
    out = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        args = getattr(kind, "__args__", (kind,))
        if SecretStr in args:
            out.add(prefix + name.upper())
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                out |= secret_variables(arg, prefix + name.upper() + "__")
    return out


def environment(objects: list[dict], container: dict) -> dict[str, str]:
    """The container's environment as the kubelet would build it, each secret a stand-in value."""
    config = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config[source["configMapRef"]["name"]])
    stand_ins = {f"{ENV_PREFIX}CLICKHOUSE_DSN": "https://driftwarden:pw@clickhouse:8443",
                 f"{ENV_PREFIX}ALERTS__SLACK_WEBHOOK_URL": "https://hooks.slack.test/x"}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = stand_ins.get(var["name"], "s" * 32)
    return env


@pytest.mark.parametrize("values", [[], ["-f", str(PRODUCTION)]], ids=["default values", "production example"])
def test_the_chart_passes_helm_lint(values):
    done = subprocess.run([helm(), "lint", str(CHART), "--strict", *values], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", list(RENDERINGS))
def test_every_rendered_object_passes_kubernetes_schemas_strictly(name):
    import kubernetes_validate

    objects = render(*RENDERINGS[name])
    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            assert obj["apiVersion"] and obj["metadata"]["name"] and obj["spec"], obj
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)  # raises on any problem


def test_the_custom_resources_carry_what_their_operators_need():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(*every_option())}
    scaled = objects[("ScaledObject", "dw-driftwarden-worker")]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "dw-driftwarden-worker"
    trigger = scaled["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"] == {"bootstrapServers": "kafka:9092", "consumerGroup": "driftwarden-score",
                                   "topic": "llm.inference", "lagThreshold": "600", "offsetResetPolicy": "earliest",
                                   "allowIdleConsumers": "false"}
    topics = {o["spec"]["topicName"]: o for (kind, _), o in objects.items() if kind == "KafkaTopic"}
    assert set(topics) >= {"llm.inference", "llm.detections", "llm.retrain.status", "llm.feedback"}
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == "kafka" and t["spec"]["partitions"] == 4
               for t in topics.values())
    rule = objects[("PrometheusRule", "dw-driftwarden")]["spec"]
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    assert rule == shipped
    monitor = objects[("ServiceMonitor", "dw-driftwarden")]["spec"]
    assert monitor["jobLabel"] == "driftwarden.io/job"
    jobs = {o["metadata"]["labels"].get("driftwarden.io/job") for (kind, _), o in objects.items() if kind == "Service"}
    assert jobs == {"driftwarden-worker", "driftwarden-sink", "driftwarden-otlp"}  # the rules' up{job=~"driftwarden.*"}


@pytest.mark.parametrize("name", list(RENDERINGS))
def test_every_process_environment_passes_the_real_settings(name):
    objects = render(*RENDERINGS[name])
    found = containers(objects)
    assert {"worker", "sink"} <= set(found)
    for container_name, container in found.items():
        done = load_settings_with(environment(objects, container))
        assert done.returncode == 0, f"{container_name}: {done.stderr[-2000:]}"


def test_a_misspelt_setting_in_values_fails_the_settings_check():
    objects = render("--set", "config.DRIFTWARDEN_TOPIC_PARTITONS=8")
    done = load_settings_with(environment(objects, containers(objects)["worker"]))
    assert done.returncode != 0
    assert "DRIFTWARDEN_TOPIC_PARTITONS" in done.stderr and "unknown setting" in done.stderr


def test_the_chart_knows_every_secret_setting():
    objects = render("--set", "otlp.enabled=true")
    found = containers(objects)
    referenced = {var["name"] for var in found["sink"]["env"] if "valueFrom" in var}
    assert referenced == secret_variables(), "a secret setting the chart does not reference (or one that is gone)"
    for var in found["sink"]["env"]:
        if "valueFrom" in var:
            assert var["valueFrom"]["secretKeyRef"] == {"name": "driftwarden", "key": var["name"],
                                                        "optional": var["name"] != "DRIFTWARDEN_WEB_TOKEN"}


def test_workers_and_the_receiver_never_see_the_sinks_secrets():
    found = containers(render("--set", "otlp.enabled=true"))
    sink_only = {v for v in secret_variables() if v[len(ENV_PREFIX):].lower().split("__")[0] in SINK_ONLY_SETTINGS}
    assert sink_only  # the store's DSN at least
    for name in ("worker", "otlp"):
        assert not sink_only & {var["name"] for var in found[name]["env"]}, name


@pytest.mark.parametrize("key, value", [
    ("DRIFTWARDEN_CLICKHOUSE_DSN", "https://u:hunter2@ch:8443"),
    ("DRIFTWARDEN_Clickhouse_Dsn", "https://u:hunter2@ch:8443"),  # settings read names case-insensitively
    ("DRIFTWARDEN_ALERTS", '{"slack_webhook_url": "https://hooks.slack.test/hunter2"}'),  # a nested config whole
], ids=["by its name", "in another case", "inside a nested config"])
def test_a_secret_in_values_is_refused_not_rendered(key, value):
    err = render_error("--set-string", f"config.{key}={value}")
    assert "secret" in err and "secrets.existingSecret" in err
    assert "hunter2" not in err


@pytest.mark.parametrize("args, says", [
    (["--set", "sink.replicas=5"], "exceeds the topic partitions"),
    (["--set", "sink.replicas=2"], "needs a ClickHouse server"),
    (["--set", "worker.autoscaling.enabled=true", "--set", "worker.autoscaling.maxReplicas=9"],
     "exceeds the topic partitions"),
    (["--set", "secrets.existingSecret="], "DRIFTWARDEN_WEB_TOKEN"),
    (["--set", "kafkaBootstrap="], "kafkaBootstrap is required"),
    (["--set", "config.DRIFTWARDEN_DATA_DIR=/x"], "set by the chart"),
    (["--set", "config.DRIFTWARDEN_WORKER_WEB_PORT=7000"], "set by the chart"),
    (["--set", "worker.replicas=5"], "exceeds the topic partitions"),
    (["--set", "web.bind=127.0.0.1"], "loopback"),
    (["--set", "persistence.enabled=false"], "needs the shared volume"),
    (["--set", "config.DRIFTWARDEN_CLICKHOUSE_DATABASE=llm"], "dashboards push"),
    (["--set", "config.LOG_LEVEL=DEBUG"], "DRIFTWARDEN_*"),
    (["--set", "image.variant=rocm"], "cpu or cuda"),
], ids=["sinks beyond partitions", "two sinks on the embedded store", "autoscaling beyond partitions",
        "no secret", "no bootstrap", "a variable the chart sets", "a port the chart sets", "workers beyond partitions",
        "loopback bind", "jobs without the shared volume", "dashboards on another database", "not a setting",
        "unknown image variant"])
def test_values_that_cannot_work_are_refused_with_the_reason(args, says):
    assert says in render_error(*args)


def test_every_container_runs_non_root_on_a_read_only_root_with_probes():
    objects = render("--set", "otlp.enabled=true")
    for obj in objects:
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/tmp"}
            assert c["resources"]["requests"] and c["resources"]["limits"]


def test_the_sink_may_start_retraining_jobs_and_nothing_else():
    objects = render()
    role = next(o for o in objects if o["kind"] == "Role")
    assert role["rules"] == [{"apiGroups": ["batch"], "resources": ["jobs"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dw-driftwarden")["data"]
    claim = next(o for o in objects if o["kind"] == "PersistentVolumeClaim")
    assert config["DRIFTWARDEN_RETRAIN__K8S_DATASETS_CLAIM"] == claim["metadata"]["name"]
    assert config["DRIFTWARDEN_RETRAIN__K8S_NAMESPACE"] == "llm"
    sink = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-sink"))
    volumes = sink["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}} in volumes


def test_the_cuda_variant_asks_for_gpus_and_the_cuda_image():
    objects = render("--set", "image.variant=cuda", "--set", "worker.gpu.count=2")
    worker = containers(objects)["worker"]
    assert worker["image"] == "driftwarden:0.1.0-cuda"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    config = next(o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "dw-driftwarden")["data"]
    assert config["DRIFTWARDEN_RETRAIN__K8S_GPU"] == "true"
    assert "nvidia.com/gpu" not in containers(render())["worker"]["resources"]["limits"]
    tagged = containers(render("--set", "image.variant=cuda", "--set", "image.tag=1.0-cuda"))["worker"]
    assert tagged["image"] == "driftwarden:1.0-cuda"


def test_the_charts_dashboards_are_those_driftwarden_exports(tmp_path):
    from driftwarden.core.settings import load_settings
    from driftwarden.dashboards.grafana import export
    from driftwarden.dashboards.levels import levels

    settings = load_settings()
    fresh = {p.name for p in export(tmp_path, settings.clickhouse_database, levels(settings))}
    shipped = CHART / "files" / "dashboards"
    assert fresh == {p.name for p in shipped.glob("*.json")}
    match, mismatch, errors = filecmp.cmpfiles(tmp_path, shipped, sorted(fresh), shallow=False)
    assert not mismatch and not errors, (
        f"stale dashboards in the chart: {mismatch or errors}; run "
        f"`driftwarden dashboards export deploy/helm/driftwarden/files/dashboards`")
    maps = [o for o in render() if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert sorted(k for m in maps for k in m["data"]) == sorted(fresh)


def test_the_charts_rules_are_the_shipped_rules():
    assert filecmp.cmp(ROOT / "deploy" / "prometheus" / "rules.yml", CHART / "files" / "rules.yml", shallow=False), \
        "copy deploy/prometheus/rules.yml to deploy/helm/driftwarden/files/rules.yml"
