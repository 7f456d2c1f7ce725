"""`python -m callbot.persistence`: consume call events, write MongoDB, until SIGTERM."""

from __future__ import annotations

from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.common.metrics import serve_metrics
from callbot.common.settings import load_settings
from callbot.common.tracing import configure_tracing
from callbot.persistence.handlers import StoredHook
from callbot.persistence.service import PersistenceService


def main(on_stored: StoredHook | None = None) -> None:
    """Run the service; `on_stored` sees each call event once it is durably written
    (bench/_persistence_lag.py measures write lag with it)."""
    settings = load_settings()
    configure_logging("persistence", settings.log_level)
    configure_tracing("persistence", settings)
    serve_metrics(settings.metrics_port)
    run_service(PersistenceService(settings, on_stored=on_stored))


if __name__ == "__main__":
    main()
