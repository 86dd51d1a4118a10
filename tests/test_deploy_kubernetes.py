"""The Kubernetes manifests in ``deploy/kubernetes/``: valid against the Kubernetes schema (offline,
with the schemas ``kubernetes-validate`` ships), probes on the endpoints made for them, secrets only by
reference, a migration Job that runs ``db upgrade``, and settings ``authserver check`` accepts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from authserver.config import SETTINGS_HELP

from helpers import API_KEY, AUTHSERVER, SESSION_SECRET

KIT = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
#: The Kubernetes version the manifests are validated against.
KUBERNETES = "1.31"
#: What the Deployment takes from the Secret "authserver".
SECRETS = {"ABLY_API_KEY", "SESSION_SECRET", "DATABASE_URL", "REDIS_URL", "AUTHSERVER_METRICS_TOKEN"}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(KIT.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found.append((path.name, document))
    return found


def _one(kind: str) -> dict[str, Any]:
    (document,) = [d for _, d in _documents() if d["kind"] == kind]
    return document


def _container(kind: str) -> dict[str, Any]:
    containers = _one(kind)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


RESOURCES = [(name, d) for name, d in _documents() if d["kind"] != "Kustomization"]


@pytest.mark.parametrize(("name", "document"), RESOURCES, ids=[name for name, _ in RESOURCES])
def test_every_manifest_is_valid_against_the_kubernetes_schema(name: str, document: dict[str, Any]) -> None:
    # strict: a misspelled or misplaced field is an error, not silently ignored by the API server
    assert kubernetes_validate.validate(document, KUBERNETES, strict=True) == KUBERNETES


def test_the_validator_refuses_what_the_api_server_would() -> None:
    broken = yaml.safe_load((KIT / "deployment.yaml").read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES, strict=True)


def test_the_kustomization_applies_every_manifest_and_the_kit_has_the_required_kinds() -> None:
    listed = set(_one("Kustomization")["resources"])
    assert listed == {name for name, _ in RESOURCES}
    kinds = sorted(d["kind"] for _, d in RESOURCES)
    assert kinds == ["ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"]


def test_the_probes_are_readyz_and_healthz_on_the_port_the_service_listens_on() -> None:
    container = _container("Deployment")
    (port,) = container["ports"]
    assert str(port["containerPort"]) == _one("ConfigMap")["data"]["AUTHSERVER_PORT"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert _one("Service")["spec"]["ports"][0]["targetPort"] == port["name"]


def test_the_service_and_the_disruption_budget_select_the_deployments_pods() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert _one("Service")["spec"]["selector"].items() <= pod_labels.items()
    budget = _one("PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["minAvailable"] < deployment["spec"]["replicas"]  # a drain can always move one pod
    job_labels = _one("Job")["spec"]["template"]["metadata"]["labels"]
    assert not _one("Service")["spec"]["selector"].items() <= job_labels.items()  # no traffic to the Job


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secrets_are_taken_by_reference_and_never_written_down(kind: str) -> None:
    container = _container(kind)
    for variable in container["env"]:
        assert "value" not in variable, variable["name"]
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "authserver", "key": variable["name"]}
    assert not any(d["kind"] == "Secret" for _, d in _documents())
    assert SECRETS.isdisjoint(_one("ConfigMap")["data"])
    if kind == "Deployment":
        assert {v["name"] for v in container["env"]} == SECRETS


def test_the_migration_job_runs_db_upgrade_with_the_deployments_image_and_settings(tmp_path: Path) -> None:
    job, server = _container("Job"), _container("Deployment")
    assert job["args"] == ["db", "upgrade"]
    assert job["image"] == server["image"]
    assert job["envFrom"] == server["envFrom"]
    assert {v["name"] for v in job["env"]} <= SECRETS
    assert _one("Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    done = subprocess.run([AUTHSERVER, *job["args"], "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_the_pods_run_unprivileged(kind: str) -> None:
    pod = _one(kind)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    context = _container(kind)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_settings_are_known_and_accepted_by_check(tmp_path: Path) -> None:
    data = _one("ConfigMap")["data"]
    for name in data:
        assert name in SETTINGS_HELP, name
    assert all(isinstance(value, str) for value in data.values())  # a ConfigMap holds strings only
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **data,
        "ABLY_API_KEY": API_KEY,
        "SESSION_SECRET": SESSION_SECRET,
        "AUTHSERVER_METRICS_TOKEN": "kubernetes-test-metrics-token-0123456789",
        # SQLite stands in for the PostgreSQL of the Secret (no server here); Redis is left out likewise.
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
    }
    result = subprocess.run([AUTHSERVER, "check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: production" in result.stdout
    assert "WARNING" not in result.stdout, result.stdout
