"""The stand-in as a child process that can be stopped, killed and restarted."""

from __future__ import annotations

import tempfile
from pathlib import Path

from callbot.testkit.processes import ServiceProcess, free_port


class MongoStandinProcess(ServiceProcess):
    """Keeps its port across restarts, and its data across `stop()`/`start()`
    (written to the state file at SIGTERM). `kill()` loses what was written
    since the last clean stop, as a crashed server without a journal would."""

    def __init__(self, log_dir: Path, state_file: Path | None = None) -> None:
        self.port = free_port()
        arguments = ["--port", str(self.port)]
        if state_file is not None:
            arguments += ["--state-file", str(state_file)]
        super().__init__(
            "mongo-standin", "callbot.testkit.mongo_standin", {}, log_dir, arguments=arguments
        )

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"


def start_standin_process(
    *, state_file: Path | None = None, log_dir: Path | None = None
) -> MongoStandinProcess:
    directory = log_dir or Path(tempfile.mkdtemp(prefix="callbot-mongo-standin-"))
    standin = MongoStandinProcess(directory, state_file)
    standin.start()
    return standin
