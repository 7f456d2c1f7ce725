"""`python -m callbot.media`: archive call recordings until SIGTERM."""

from __future__ import annotations

from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.common.metrics import serve_metrics
from callbot.common.settings import load_settings
from callbot.common.tracing import configure_tracing
from callbot.media.service import MediaService


def main() -> None:
    settings = load_settings()
    configure_logging("media", settings.log_level)
    configure_tracing("media", settings)
    serve_metrics(settings.metrics_port)
    run_service(MediaService(settings))


if __name__ == "__main__":
    main()
