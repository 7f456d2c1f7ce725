"""deploy/kubernetes, checked statically (no cluster runs here).

- Every object validates against the Kubernetes API schemas `kubernetes-validate`
  ships (strict: an unknown field is an error), KEDA's objects against the
  CRDs of KEDA kept in tests/deploy/schemas (no network at test time).
- What the manifests say matches what the services do: each env var is a
  setting that service reads (README's configuration table), with a value
  `Settings` accepts; ports and probe paths are those the services serve;
  the grace period outlasts the drain; KEDA watches dialog's real queue.
- docs/deploy.md matches them: every service in its picture, its table of
  resources equal to the manifests' requests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from callbot.common.messaging import Topology
from callbot.common.settings import Settings
from callbot.gateway import health
from callbot.gateway.__main__ import graceful_shutdown_s

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).parent / "schemas"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
KUBERNETES_VERSION = "1.30.0"  # the oldest minor still supported upstream when written
SERVICES = ("gateway", "dialog", "persistence", "campaigns", "media")
WORKERS = SERVICES[1:]
# Read by botocore itself, not by `Settings` (README: gateway, media).
READ_BY_LIBRARIES = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi)?$")

Manifest = dict[str, Any]


def _documents() -> Iterator[tuple[str, Manifest]]:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                yield path.name, document


DOCUMENTS = list(_documents())


def _one(kind: str, name: str) -> Manifest:
    found = [d for _, d in DOCUMENTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name!r} in {MANIFESTS}"
    return found[0]


def _container(service: str) -> Manifest:
    containers: list[Manifest] = _one("Deployment", service)["spec"]["template"]["spec"][
        "containers"
    ]
    assert [c["name"] for c in containers] == [service]
    return containers[0]


@cache
def _crd_schemas() -> dict[tuple[str, str], Manifest]:
    """(apiVersion, kind) -> the openAPIV3Schema of KEDA's CRDs kept here."""
    schemas = {}
    for path in SCHEMAS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            api_version = f"{crd['spec']['group']}/{version['name']}"
            schemas[api_version, crd["spec"]["names"]["kind"]] = version["schema"][
                "openAPIV3Schema"
            ]
    return schemas


@pytest.mark.parametrize(
    "document",
    [d for _, d in DOCUMENTS],
    ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in DOCUMENTS],
)
def test_every_object_validates_against_its_schema(document: Manifest) -> None:
    custom = _crd_schemas().get((document["apiVersion"], document["kind"]))
    if custom is not None:
        # A CRD schema (OpenAPI v3) is JSON Schema for everything these objects use.
        jsonschema.validate(document, custom)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert document["metadata"].get("namespace", "callbot") == "callbot"


def test_the_schema_check_would_catch_a_misspelt_field() -> None:
    deployment = _one("Deployment", "gateway")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    scaled = _one("ScaledObject", "dialog")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "two"}},
            _crd_schemas()["keda.sh/v1alpha1", "ScaledObject"],
        )


def test_the_kustomization_applies_every_manifest_and_names_every_image() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "callbot"
    images = {image["name"] for image in kustomization["images"]}
    assert images == {_container(service)["image"] for service in SERVICES}


# --- Env vars: settings each service reads, with values Settings accepts -----


@cache
def _readme_used_by() -> dict[str, frozenset[str]]:
    """README's configuration table: variable -> the services that read it."""
    used_by: dict[str, frozenset[str]] = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        readers = frozenset(name.strip() for name in cells[2].split(","))
        for variable in re.findall(r"`([A-Z0-9_]+)`", cells[0]):
            used_by[variable] = readers
    assert "RABBITMQ_URL" in used_by, "README's configuration table not found"
    return used_by


def _environment(service: str) -> dict[str, str]:
    """The container's environment: name -> value (secrets: secret.yaml's value)."""
    container = _container(service)
    secrets: dict[str, str] = _one("Secret", "callbot-secrets")["stringData"]
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config_map = _one("ConfigMap", source["configMapRef"]["name"])
        environment.update(config_map["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        assert reference["name"] == "callbot-secrets"
        assert reference["key"] in secrets, f"{service}: no key {reference['key']} in the Secret"
        environment[variable["name"]] = secrets[reference["key"]]
    return environment


@pytest.mark.parametrize("service", SERVICES)
def test_every_env_var_is_a_setting_the_service_reads(service: str) -> None:
    used_by = _readme_used_by()
    fields = {name.upper() for name in Settings.model_fields}
    environment = _environment(service)
    for variable in environment:
        assert variable in fields | READ_BY_LIBRARIES, f"{service}: {variable} is read by nobody"
        readers = used_by.get(variable, frozenset())
        assert readers & {service, "all"}, (
            f"{service}: {variable} is read by {sorted(readers)} (README), not by {service}"
        )
    # The values are ones the service would start with.
    Settings.model_validate(
        {name.lower(): value for name, value in environment.items() if name in fields}
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_gets_the_broker_and_the_settings_it_cannot_do_without(
    service: str,
) -> None:
    environment = _environment(service)
    assert "RABBITMQ_URL" in environment
    assert len(Settings(rabbitmq_url=environment["RABBITMQ_URL"]).rabbitmq_nodes) == 3
    assert "replicaSet=" in environment["MONGODB_URL"]
    required = {
        "gateway": {"PUBLIC_URL", "CALLBOT_API_KEYS", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"},
        "dialog": {"OPENAI_API_KEY"},
        "campaigns": {"CAMPAIGNS_GATEWAY_URL", "CAMPAIGNS_API_KEY"},
        "media": {"TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "S3_RECORDINGS_BUCKET"},
    }
    assert required.get(service, set()) <= set(environment)


# --- Ports, probes, drain -----------------------------------------------------


def _port(container: Manifest, name: str) -> int:
    ports = {port["name"]: int(port["containerPort"]) for port in container["ports"]}
    return ports[name]


def test_gateway_probes_and_service_use_the_endpoints_gateway_serves() -> None:
    container = _container("gateway")
    served = {route.path for route in health.router.routes}  # type: ignore[attr-defined]
    assert _port(container, "http") == int(_environment("gateway")["GATEWAY_PORT"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] in served
    assert {"/readyz", "/healthz"} <= served
    # The startup probe waits as long as gateway waits for its dependencies.
    startup = container["startupProbe"]
    budget = float(_environment("gateway")["STARTUP_TIMEOUT_S"])
    assert startup["periodSeconds"] * startup["failureThreshold"] > budget
    service = _one("Service", "gateway")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= _pod_labels("gateway").items()
    campaigns_target = _environment("campaigns")["CAMPAIGNS_GATEWAY_URL"]
    assert campaigns_target == f"http://{service['metadata']['name']}"  # port 80
    assert service["spec"]["ports"][0]["port"] == 80


@pytest.mark.parametrize("service", WORKERS)
def test_worker_probes_use_the_metrics_port_it_serves(service: str) -> None:
    container = _container(service)
    assert _port(container, "metrics") == int(_environment(service)["METRICS_PORT"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}


def _pod_labels(service: str) -> dict[str, str]:
    labels: dict[str, str] = _one("Deployment", service)["spec"]["template"]["metadata"]["labels"]
    return labels


def _pod_spec(service: str) -> Manifest:
    spec: Manifest = _one("Deployment", service)["spec"]["template"]["spec"]
    return spec


def test_gateway_grace_period_outlasts_the_endpoint_delay_and_its_drain() -> None:
    container = _container("gateway")
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    deadline_ms = int(_environment("gateway")["DIALOG_DEADLINE_MS"])
    drain = graceful_shutdown_s(Settings(dialog_deadline_ms=deadline_ms))
    closing_s = 5  # the lifespan's close of RabbitMQ, MongoDB, the reconciler
    grace = _pod_spec("gateway")["terminationGracePeriodSeconds"]
    assert grace >= int(pre_stop[1]) + drain + closing_s


def test_dialog_grace_period_outlasts_the_longest_turn_and_the_summaries() -> None:
    bounds = Settings.model_fields["dialog_deadline_ms"].metadata
    longest_turn_s = math.ceil(next(bound.le for bound in bounds if hasattr(bound, "le")) / 1000)
    summaries_s = 2  # CallSummarizer.close gives running summaries 2 s
    assert _pod_spec("dialog")["terminationGracePeriodSeconds"] >= longest_turn_s + summaries_s + 5


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_disruption_budget_it_can_meet(service: str) -> None:
    budget = _one("PodDisruptionBudget", service)["spec"]
    assert budget["selector"]["matchLabels"].items() <= _pod_labels(service).items()
    deployment = _one("Deployment", service)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= _pod_labels(service).items()
    replicas = deployment["spec"].get("replicas")
    if service == "dialog":
        assert replicas is None, "KEDA sets dialog's replicas; a fixed number would fight it"
        replicas = _one("ScaledObject", "dialog")["spec"]["minReplicaCount"]
    assert budget["minAvailable"] < replicas  # one pod may always be evicted
    strategy = deployment["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0  # the replacement is up before one drains


@pytest.mark.parametrize("service", SERVICES)
def test_resources_are_valid_quantities_with_a_memory_limit(service: str) -> None:
    resources = _container(service)["resources"]
    for value in (*resources["requests"].values(), *resources["limits"].values()):
        assert QUANTITY.match(str(value)), f"{service}: {value!r} is not a quantity"
    assert _mebibytes(resources["limits"]["memory"]) > _mebibytes(resources["requests"]["memory"])


def _mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


def test_dialog_scales_on_its_own_rpc_queue() -> None:
    scaled = _one("ScaledObject", "dialog")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "dialog"
    (trigger,) = scaled["triggers"]
    namespace = _environment("dialog")["RABBITMQ_NAMESPACE"]
    assert trigger["metadata"]["queueName"] == Topology(namespace).dialog_rpc_queue
    # The HTTP protocol counts unacked messages too: the turns replicas hold.
    assert trigger["metadata"]["protocol"] == "http"
    authentication = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (reference,) = authentication["spec"]["secretTargetRef"]
    assert reference["parameter"] == "host"
    secrets = _one("Secret", reference["name"])["stringData"]
    vhost = Settings(rabbitmq_url=secrets["RABBITMQ_URL"]).rabbitmq_nodes[0].rsplit("/", 1)[1]
    assert secrets[reference["key"]].endswith(f"/{vhost}")  # the same vhost


# --- docs/deploy.md -----------------------------------------------------------


def test_the_deploy_doc_pictures_every_service_and_is_linked_from_the_readme() -> None:
    doc = DEPLOY_DOC.read_text()
    picture = doc.split("```mermaid", 1)[1].split("```", 1)[0]
    for service in SERVICES:
        assert service in picture, f"{service} is not in docs/deploy.md's picture"
    for name in ("PodDisruptionBudget", "ScaledObject", "callbot.dialog.rpc"):
        assert name in doc
    assert "docs/deploy.md" in (ROOT / "README.md").read_text()


def test_the_deploy_doc_table_of_resources_is_the_manifests() -> None:
    """Each row: | service | measured RSS | memory request | memory limit | cpu request |."""
    rows = {}
    for line in DEPLOY_DOC.read_text().splitlines():
        cells = [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in SERVICES:
            rows[cells[0]] = cells[2:]
    assert set(rows) == set(SERVICES)
    for service, (memory, limit, cpu) in rows.items():
        resources = _container(service)["resources"]
        assert [memory, limit, cpu] == [
            resources["requests"]["memory"],
            resources["limits"]["memory"],
            resources["requests"]["cpu"],
        ], service
