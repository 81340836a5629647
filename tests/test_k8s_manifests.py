"""deploy/k8s: valid against the Kubernetes schemas (kubernetes-validate, strict: an unknown field is an error) and
the Prometheus Operator's CRD schemas (an npm package), and consistent with each other, the image and settings.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.build import bento_env
from deploy.run import BENTO_UID, CONTAINER_PORT
from settings import Settings
from tests.conftest import ROOT

MANIFESTS = ROOT / "deploy" / "k8s"
NPM_TOOL = ROOT / "tests" / "k8s"
# The oldest Kubernetes these manifests target (preStop `sleep` is on by default from 1.30) and the newest schemas.
VERSIONS = ("1.30.0", "1.37.0")
NOT_SETTINGS = {"POD_NAME", "BENTOML_HOME"}  # the pod's own name; the drift job's model store (the bento's)


@cache
def documents() -> dict[str, dict]:
    """Every manifest by kind (one document per file), the example Secret included."""
    found = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        (document,) = list(yaml.safe_load_all(path.read_text()))
        found[document["kind"]] = document | {"_file": path.name}
    return found


def manifest(kind: str) -> dict:
    """A fresh copy: tests may break it."""
    return json.loads(json.dumps({k: v for k, v in documents()[kind].items() if k != "_file"}))


def pod_spec(kind: str) -> dict:
    spec = manifest(kind)["spec"]
    return (spec["jobTemplate"]["spec"] if kind == "CronJob" else spec)["template"]["spec"]


@pytest.mark.parametrize("version", VERSIONS)
def test_core_manifests_are_valid_against_the_kubernetes_schemas(version):
    checked = []
    for kind, document in documents().items():
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(manifest(kind), version, strict=True)  # raises on any error
        checked.append(kind)
    assert set(checked) >= {"Deployment", "Service", "HorizontalPodAutoscaler", "CronJob", "Secret",
                            "PersistentVolumeClaim", "ConfigMap", "PodDisruptionBudget"}  # fmt: skip


def test_strict_validation_rejects_a_misspelt_field():
    broken = manifest("Deployment")
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def _validate_crds(documents_: list[dict]) -> list[dict]:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "install node and npm (Debian's nodejs and npm; .ci/run does)"
    if not (NPM_TOOL / "node_modules" / "@kubernetes-models" / "prometheus-operator").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--silent"], cwd=NPM_TOOL, check=True, timeout=600)
    result = subprocess.run([node, "validate_crds.mjs"], cwd=NPM_TOOL, input=json.dumps(documents_),
                            capture_output=True, text=True, check=True, timeout=120)  # fmt: skip
    return json.loads(result.stdout)


def test_service_monitor_is_valid_against_the_prometheus_operator_crd():
    monitor = manifest("ServiceMonitor")
    broken = json.loads(json.dumps(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "every 15 seconds"
    del broken["spec"]["selector"]
    good, bad = _validate_crds([monitor, broken])
    assert good == {"kind": "ServiceMonitor", "ok": True}, good
    assert not bad["ok"] and "selector" in bad["error"], "the validator must be able to fail"


def test_kustomization_applies_every_manifest_but_the_example_secret():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {document["_file"] for document in documents().values()}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    assert kustomization["images"][0]["name"] == pod_spec("Deployment")["containers"][0]["image"].split(":")[0]


def test_service_monitor_hpa_and_pdb_find_the_deployment():
    pod_labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    service = manifest("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = manifest("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["endpoints"][0]["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert monitor["endpoints"][0]["path"] == "/metrics"
    target = manifest("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", manifest("Deployment")["metadata"]["name"])
    assert manifest("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_server_probes_resources_user_and_tokens():
    spec = pod_spec("Deployment")
    (container,) = spec["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": CONTAINER_PORT}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == BENTO_UID
    secret = manifest("Secret")
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"API_TOKENS", "FEEDBACK_TOKENS", "ADMIN_TOKEN"}
    assert all(ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"] for ref in refs.values())
    assert spec["terminationGracePeriodSeconds"] > container["lifecycle"]["preStop"]["sleep"]["seconds"]


def test_every_variable_is_a_setting_and_the_state_volume_is_the_images():
    settings = {name.upper() for name in Settings.model_fields}
    state_dir = bento_env("STATE_DIR")
    for kind in ("Deployment", "CronJob"):
        spec = pod_spec(kind)
        (container,) = spec["containers"]
        names = {entry["name"] for entry in container["env"]}
        assert names - NOT_SETTINGS <= settings, f"{kind}: not a setting: {names - NOT_SETTINGS - settings}"
        assert container["envFrom"][0]["configMapRef"]["name"] == manifest("ConfigMap")["metadata"]["name"]
        (mount,) = container["volumeMounts"]
        (volume,) = spec["volumes"]
        assert mount["mountPath"] == state_dir and volume["persistentVolumeClaim"]["claimName"] == (
            manifest("PersistentVolumeClaim")["metadata"]["name"])
        assert spec["securityContext"]["fsGroup"] == BENTO_UID
    assert set(manifest("ConfigMap")["data"]) <= settings
    assert manifest("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_drift_cronjob_reads_the_servers_logs_with_the_servers_image():
    server = pod_spec("Deployment")["containers"][0]
    job = pod_spec("CronJob")["containers"][0]
    assert job["image"] == server["image"]
    log_path = next(e["value"] for e in server["env"] if e["name"] == "PREDICTION_LOG_PATH")
    args = job["args"]
    assert args[:3] == ["python", "-m", "monitoring.drift"]
    assert args[args.index("--log") + 1] == str(Path(log_path).parent), "the folder of every replica's log"
    assert manifest("CronJob")["spec"]["concurrencyPolicy"] == "Forbid"
