"""`python -m callbot.persistence`: consume call events, write MongoDB, until SIGTERM."""

from __future__ import annotations

from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.common.metrics import serve_metrics
from callbot.common.settings import load_settings
from callbot.persistence.service import PersistenceService


def main() -> None:
    settings = load_settings()
    configure_logging("persistence", settings.log_level)
    serve_metrics(settings.metrics_port)
    run_service(PersistenceService(settings))


if __name__ == "__main__":
    main()
