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


def _config(*profiles: str) -> dict[str, Any]:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is not installed: run scripts/ensure-tools.sh"
    args = [compose, "-f", str(ROOT / "docker-compose.yml")]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, check=False)
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
    }
    in_demo_profile = {
        name for name, spec in services.items() if "demo" in spec.get("profiles", ())
    }
    assert in_demo_profile == {"emulator", "demo"}


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
