"""Developer and operator tooling (not deployed). Makes the stockhold layer importable
when a tool is run directly (``python -m tools.…``), as ``make`` does with PYTHONPATH."""

import sys
from pathlib import Path

_LAYER = str(Path(__file__).resolve().parent.parent / "layers" / "stockhold")
if _LAYER not in sys.path:
    sys.path.append(_LAYER)
