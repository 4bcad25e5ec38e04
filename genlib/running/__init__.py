"""Running experiments: their declared shape, the scale, sweeps and the cache of finished runs,
and what a full-scale run needs in memory. Built on :mod:`genlib.core` and the measures."""
