"""genlib: the library behind the executable book on how neural networks generalize."""
from __future__ import annotations

__version__ = "0.1.0"
