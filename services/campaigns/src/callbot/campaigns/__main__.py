"""`python -m callbot.campaigns`: run campaigns (dial, follow outcomes) until SIGTERM."""

from __future__ import annotations

from callbot.campaigns.service import CampaignsService
from callbot.common.lifecycle import run_service
from callbot.common.logs import configure_logging
from callbot.common.metrics import serve_metrics
from callbot.common.settings import load_settings
from callbot.common.tracing import configure_tracing


def main() -> None:
    settings = load_settings()
    configure_logging("campaigns", settings.log_level)
    configure_tracing("campaigns", settings)
    serve_metrics(settings.metrics_port)
    run_service(CampaignsService(settings))


if __name__ == "__main__":
    main()
