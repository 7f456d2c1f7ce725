"""Makes `campaigns_doubles` importable: pytest runs with --import-mode=importlib,
which leaves test directories off sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
