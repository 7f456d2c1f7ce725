"""docker-compose.yml and the Dockerfile, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("gateway", "dialog", "persistence")
# The media worker needs the broker and object storage, not MongoDB.
OBJECT_STORAGE = ("minio", "minio-buckets")
TRACING = ("otel-collector", "jaeger")


def _config(*profiles: str, env_file: Path | None = None) -> dict[str, Any]:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed: run scripts/ensure-tools.sh"
    args = [compose, "-f", str(ROOT / "docker-compose.yml")]
    if env_file is not None:
        args = [compose, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run(
        [*args, "config"], capture_output=True, text=True, check=False, cwd=ROOT / "deploy"
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_file_is_valid_and_only_the_demo_profile_adds_the_emulator() -> None:
    services = _config("demo")["services"]
    assert set(services) == {
        "rabbitmq",
        "mongodb",
        *SERVICES,
        "campaigns",
        "media",
        *OBJECT_STORAGE,
        "emulator",
        "demo",
        *TRACING,
    }
    in_demo_profile = {
        name for name, spec in services.items() if "demo" in spec.get("profiles", ())
    }
    assert in_demo_profile == {"emulator", "demo"}


def test_the_tracing_profile_adds_a_collector_and_jaeger_and_tracing_is_off_without_it() -> None:
    services = _config("tracing")["services"]
    in_tracing_profile = {
        name for name, spec in services.items() if "tracing" in spec.get("profiles", ())
    }
    assert in_tracing_profile == set(TRACING)
    collector = yaml.safe_load((ROOT / "deploy" / "otel-collector.yaml").read_text())
    assert collector["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger:4317"
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    mounted = services["otel-collector"]["volumes"][0]
    source = mounted["source"] if isinstance(mounted, dict) else mounted.split(":")[0]
    assert Path(source).resolve() == (ROOT / "deploy" / "otel-collector.yaml").resolve()
    # Off by default: no endpoint unless OTEL_EXPORTER_OTLP_ENDPOINT is given.
    for name in (*SERVICES, "campaigns", "media"):
        assert services[name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == ""


@pytest.mark.parametrize("name", [*SERVICES, "campaigns", "media", "rabbitmq", "mongodb", "minio"])
def test_every_long_running_service_has_a_healthcheck(name: str) -> None:
    assert _config()["services"][name]["healthcheck"]["test"]


@pytest.mark.parametrize("name", SERVICES)
def test_services_wait_for_healthy_broker_and_database(name: str) -> None:
    depends_on = _config()["services"][name]["depends_on"]
    assert depends_on["rabbitmq"]["condition"] == "service_healthy"
    assert depends_on["mongodb"]["condition"] == "service_healthy"


def test_the_media_worker_waits_for_the_broker_and_the_buckets() -> None:
    services = _config()["services"]
    depends_on = services["media"]["depends_on"]
    assert depends_on["rabbitmq"]["condition"] == "service_healthy"
    assert depends_on["minio-buckets"]["condition"] == "service_completed_successfully"
    assert services["minio-buckets"]["depends_on"]["minio"]["condition"] == "service_healthy"
    environment = services["media"]["environment"]
    assert environment["S3_ENDPOINT_URL"] == "http://minio:9000"
    buckets = services["minio-buckets"]["environment"]
    assert (buckets["RECORDINGS"], buckets["AGENT_FILES"]) == (
        environment["S3_RECORDINGS_BUCKET"],
        environment["S3_AGENT_FILES_BUCKET"],
    )


def test_minio_keeps_its_data_in_a_named_volume() -> None:
    config = _config()
    assert any(
        (v["source"] if isinstance(v, dict) else v.split(":")[0]) == "minio-data"
        for v in config["services"]["minio"]["volumes"]
    )


def test_mongodb_keeps_its_data_in_a_named_volume() -> None:
    config = _config()
    volumes = config["services"]["mongodb"]["volumes"]
    assert any(
        (v["source"] if isinstance(v, dict) else v.split(":")[0]) == "mongodb-data" for v in volumes
    )
    assert "mongodb-data" in config["volumes"]


def test_every_image_target_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)[1:]
    targets = {stage.split()[2]: stage for stage in stages}
    for target in (*SERVICES, "media", "emulator"):
        assert re.search(r"^USER (?!root)\w+", targets[target], flags=re.MULTILINE), target
        assert "CMD" in targets[target]


DEMO_VALUES = {"CALLBOT_API_KEYS", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"}


def test_without_an_env_file_gateway_gets_no_demo_credentials_and_real_twilio() -> None:
    # A forgotten .env: gateway's settings check then refuses to start and names
    # these variables (services/gateway/tests/unit/test_settings_check.py).
    environment = _config()["services"]["gateway"]["environment"]
    assert {name: environment[name] for name in DEMO_VALUES} == dict.fromkeys(DEMO_VALUES, "")
    assert environment["TWILIO_API_BASE_URL"] == "https://api.twilio.com"


def test_the_demo_profile_brings_its_own_values() -> None:
    services = _config("demo", env_file=ROOT / "deploy" / "demo.env")["services"]
    gateway = services["gateway"]["environment"]
    assert all(gateway[name] for name in DEMO_VALUES)
    assert gateway["TWILIO_API_BASE_URL"] == "http://emulator:8090"
    assert services["emulator"]["environment"]["TWILIO_AUTH_TOKEN"] == gateway["TWILIO_AUTH_TOKEN"]
    assert "--api-key=demo-key" in services["demo"]["command"]


def test_images_are_pinned_to_a_patch_version() -> None:
    images = [spec["image"] for spec in _config("demo")["services"].values() if "image" in spec]
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    images += [image for image in re.findall(r"^FROM (\S+)", dockerfile, re.M) if image != "base"]
    assert images
    for image in images:
        # A patch version, or MinIO's dated release tags.
        pinned = re.search(r":(\d+\.\d+\.\d+|RELEASE\.[0-9T-]+Z)", image)
        assert pinned, f"{image} is not pinned to a patch version"
