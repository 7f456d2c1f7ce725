"""`python -m callbot.dialog`: serve `dialog.rpc` until SIGTERM/SIGINT."""

from __future__ import annotations

from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.common.metrics import serve_metrics
from callbot.common.settings import load_settings
from callbot.common.tracing import configure_tracing
from callbot.dialog.service import DialogService


def main() -> None:
    settings = load_settings()
    configure_logging("dialog", settings.log_level)
    configure_tracing("dialog", settings)
    serve_metrics(settings.metrics_port)
    run_service(DialogService(settings))


if __name__ == "__main__":
    main()
