"""Issue 6, "Must show" 9: the demo runs and exits 0.

`make demo` is `scripts/demo.py` after `make install broker`; the test runs the
script itself with this interpreter (the venv the suite runs in), as a child
process, on the deterministic policy (no LLM configured), against the test's
RabbitMQ. Once with the test's MongoDB, and once with none, as on a fresh
clone on a machine without MongoDB: the demo then starts the stand-in itself
and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import ROOT
from pymongo import MongoClient

pytestmark = pytest.mark.e2e

TRANSCRIPT = [
    r"0 AGENT  Hi Ada, this is Ava from Acme Support\. .*Could you tell me your full name\?",
    r"1 CALLEE Yes, this is Ada Lovelace\.",
    r"2 AGENT  Thank you\. Could you tell me your email address\?",
    r"3 CALLEE Sure, my email is ada@example\.com\.",
    r"4 AGENT  Thank you\. Could you tell me your callback phone number\?",
    r"5 CALLEE You can call me back at \+1 415 555 0134\.",
    r"6 AGENT  Thank you, Ada, I have everything I need\. Have a great day\. Goodbye!",
]
STANDIN_WARNING = "No MONGODB_URL: using the in-memory MongoDB stand-in"


@pytest.mark.parametrize("mongo", ["test-mongodb", "no-mongodb"])
def test_demo_runs_a_whole_call_and_exits_0(
    rabbitmq_url: str, mongodb_url: str, mongo: str
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "MONGODB_", "RABBITMQ_", "LLM_"))
    }
    env["RABBITMQ_URL"] = rabbitmq_url
    if mongo == "test-mongodb":
        env["MONGODB_URL"] = mongodb_url

    client: MongoClient[dict[str, Any]]
    with MongoClient(mongodb_url, serverSelectionTimeoutMS=5000) as client:
        databases_before = set(client.list_database_names())
        try:
            demo = subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "demo.py")],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        finally:
            # The demo keeps its call in MongoDB for whoever wants to look; the test does not.
            for name in set(client.list_database_names()) - databases_before:
                if name.startswith("callbot_demo"):
                    client.drop_database(name)

    output = demo.stdout
    assert demo.returncode == 0, f"demo exited {demo.returncode}\n{output}\n{demo.stderr}"
    assert "dialog: deterministic policy (no LLM)" in output
    assert (STANDIN_WARNING in output) == (mongo == "no-mongodb")
    transcript = output[output.index("transcript:") : output.index("stored call document:")]
    turns = [line.strip() for line in transcript.splitlines() if re.match(r"\s+\d+ ", line)]
    assert len(turns) == len(TRANSCRIPT), transcript
    for pattern, line in zip(TRANSCRIPT, turns, strict=True):
        assert re.fullmatch(pattern, line), f"{line!r} does not match {pattern!r}"
    assert re.search(r"ended_by: system_complete\s+status: completed\s+duration: \d+ s", output)
    assert (
        'data collected: {"full_name": "Ada Lovelace", "email": "ada@example.com", '
        '"callback_phone": "+14155550134"}'
    ) in output
    assert "stored call document: " in output
    stored = json.loads((ROOT / ".demo" / "call.json").read_text())
    assert stored["completed_published_at"]
    assert "make up" in output[output.index("What next:") :]
    assert "http://127.0.0.1:8080/docs" in output


def _path_without_docker_compose(shims: Path) -> str:
    """A PATH with every tool of the system's directories but docker-compose
    (root's own directories would not be readable by `nobody`)."""
    shims.mkdir()
    for directory in ("/usr/local/bin", "/usr/local/sbin", "/usr/bin", "/usr/sbin", "/bin"):
        if not Path(directory).is_dir():
            continue
        for tool in Path(directory).iterdir():
            target = shims / tool.name
            if tool.name != "docker-compose" and not target.exists() and os.access(tool, os.X_OK):
                target.symlink_to(tool)
    return str(shims)


@contextlib.contextmanager
def _reachable_by_others(path: Path) -> Iterator[None]:
    """`nobody` must reach the checkout, and a clone under `mktemp -d` (mode
    0700) is not: each directory on the way that others cannot search gets
    the search bit (not the read bit) for the run, and loses it after."""
    lent = [d for d in (path, *path.parents) if not d.stat().st_mode & stat.S_IXOTH]
    for directory in lent:
        directory.chmod(directory.stat().st_mode | stat.S_IXOTH)
    try:
        yield
    finally:
        for directory in lent:
            directory.chmod(directory.stat().st_mode & ~stat.S_IXOTH)


def _venv_nobody_can_run(work: Path) -> Path:
    """The suite's venv may run on an interpreter under root's home (pyenv),
    which `nobody` cannot execute: a venv on the system's Python 3.11 that
    loads the suite's installed packages (a user's own clone has its own venv)."""
    venv = work / "venv"
    system_python = "/usr/bin/python3"
    subprocess.run([system_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = next((ROOT / ".venv" / "lib").glob("python3.*/site-packages"))
    [own] = list((venv / "lib").glob("python3.*/site-packages"))
    (own / "suite-packages.pth").write_text(f"import site; site.addsitedir({str(packages)!r})\n")
    (venv / ".installed").touch()  # `make install` is the caller's step, done above
    return venv


def test_make_demo_runs_as_a_non_root_user_without_docker_compose(rabbitmq_url: str) -> None:
    """Issue 14, "Must show" 4: `make demo` needs Python and RabbitMQ only.

    Run as root (as here), the demo runs as `nobody` through setpriv; run by a
    user, as that user. The venv is made first by the caller (a user making
    their own clone's venv is the same step), so `make demo` as `nobody` must
    write nothing outside its CALLBOT_DEMO_DIR."""
    install = subprocess.run(["make", "-s", "-C", str(ROOT), "install"], check=False)
    assert install.returncode == 0
    work = Path(tempfile.mkdtemp(prefix="demo-nonroot-"))
    try:
        work.chmod(0o777)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OPENAI_", "MONGODB_", "RABBITMQ_", "LLM_", "MAKE"))
        }
        env.update(
            PATH=_path_without_docker_compose(work / "bin"),
            RABBITMQ_URL=rabbitmq_url,
            CALLBOT_DEMO_DIR=str(work / "demo"),
            HOME=str(work),
        )
        command = ["make", "-s", "-C", str(ROOT), "demo"]
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            assert setpriv, "setpriv (util-linux) is needed to run the demo as nobody"
            command = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *command]
            command.append(f"VENV={_venv_nobody_can_run(work)}")
        assert subprocess.run(["which", "docker-compose"], env=env, check=False).returncode != 0
        # Only `nobody` needs the way lent; a user runs from a checkout of their own.
        reachable = _reachable_by_others(ROOT) if os.geteuid() == 0 else contextlib.nullcontext()
        with reachable:
            demo = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=240, check=False
            )
        output = demo.stdout + demo.stderr
        assert demo.returncode == 0, output
        assert "docker-compose" not in output
        assert re.search(r"ended_by: system_complete\s+status: completed", output)
        assert (work / "demo" / "call.json").stat().st_uid == (
            65534 if os.geteuid() == 0 else os.geteuid()
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
