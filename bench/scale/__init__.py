"""The formula's own cost as the configuration grows (``python -m bench.scale.run``)."""

import sys
from pathlib import Path

# the formula's model code (salt/_utils) is plain Python: importable without Salt, as the tests do
_UTILS = str(Path(__file__).resolve().parents[2] / "salt" / "_utils")
if _UTILS not in sys.path:
    sys.path.insert(0, _UTILS)
