"""Results on disk, keyed by experiment name, configuration and genlib version (and source).

A finished run is written atomically (temporary file, then rename), so an interrupted run leaves
either nothing or a complete file. A file that is damaged all the same (a full disk, a copy cut
short) fails its checksum on reading and is recomputed.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from ..core.environment import cache_dir
from ..core.history import History
from .sources import PACKAGE_ROOT, dependencies

PIPELINE = Path(__file__).with_name("sweep.py")  # what runs every experiment (and what it imports)


def _jsonable(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return _jsonable(dataclasses.asdict(config))
    if isinstance(config, Mapping):
        return {str(k): _jsonable(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_jsonable(v) for v in config]
    if config is None or isinstance(config, (bool, int, float, str)):
        return config
    raise ValueError(f"config values must be numbers, strings, lists or dicts; got {config!r}")


@functools.cache
def source_fingerprint(chapter_file: str | None = None) -> str:
    """A hash of the source a result depends on: the file that declared the experiment and every
    genlib module it imports, followed through their imports (:mod:`genlib.running.sources`), plus
    the pipeline that runs it. Changed code is a new key, even unreleased; editing one chapter keeps
    every other chapter's cache, and editing the plots keeps them all."""
    h = hashlib.sha256()
    roots = [PIPELINE] + ([chapter_file] if chapter_file else [])
    files = sorted({path for root in roots for path in dependencies(str(root))})
    for path in files:
        h.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() if path.is_relative_to(PACKAGE_ROOT)
                 else path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def cache_key(name: str, config: Any, chapter_file: str | None = None) -> str:
    """A stable hex key for (name, config, genlib version and the source the result depends on)."""
    version = f"{__version__}+{source_fingerprint(chapter_file)}"
    payload = json.dumps({"name": name, "config": _jsonable(config), "version": version}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def cache_path(name: str, config: Any, directory: str | Path | None = None, chapter_file: str | None = None) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return Path(directory or cache_dir()) / safe / f"{cache_key(name, config, chapter_file)}.npz"


def cached(
    name: str,
    config: Any,
    compute: Callable[[], History],
    directory: str | Path | None = None,
    chapter_file: str | None = None,
) -> History:
    """Load the stored History for (name, config), or compute, store and return it."""
    path = cache_path(name, config, directory, chapter_file)
    if path.exists():
        try:
            return History.load(path)
        except ValueError as e:
            warnings.warn(f"recomputing a damaged cache entry: {e}", stacklevel=2)
    history = compute()
    history.meta["experiment"] = {"name": name, "config": _jsonable(config)}
    history.save(path)
    return history
