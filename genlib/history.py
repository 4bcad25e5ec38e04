"""The record of a training run: tidy arrays over (step, member) for each metric."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class History:
    """steps: (T,); metrics[name]: (T, S); members: per-member hyperparameters (seed, lr, ...)."""

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    members: list[dict]
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise KeyError(f"no metric {name!r}; recorded: {sorted(self.metrics)}")
        return self.metrics[name]

    @property
    def names(self) -> list[str]:
        return sorted(self.metrics)

    def as_array(self) -> np.ndarray:
        """(T, S, M) with metrics in the order of :attr:`names`."""
        return np.stack([self.metrics[n] for n in self.names], axis=-1)

    def final(self, name: str) -> np.ndarray:
        """(S,) last recorded value of a metric."""
        return self[name][-1]

    def first_step(self, name: str, threshold: float, above: bool = True) -> np.ndarray:
        """(S,) first recorded step where the metric is >= (or <=) threshold; NaN where never."""
        values = self[name]
        hit = values >= threshold if above else values <= threshold
        first = np.where(hit.any(0), hit.argmax(0), -1)
        return np.where(first >= 0, self.steps[np.maximum(first, 0)], np.nan).astype(float)

    def select(self, **where) -> History:
        """The members whose hyperparameters match, e.g. ``select(weight_decay=1.0)``."""
        keep = [i for i, m in enumerate(self.members) if all(m.get(k) == v for k, v in where.items())]
        if not keep:
            raise ValueError(f"no member matches {where}; members: {self.members}")
        return History(
            self.steps,
            {k: v[:, keep] for k, v in self.metrics.items()},
            [self.members[i] for i in keep],
            dict(self.meta),
        )

    # --- storage: one .npz whose payload carries its own checksum, written atomically ---

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, then rename over ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"steps": self.steps, **{f"metric/{k}": v for k, v in self.metrics.items()}}
        header = {"members": self.members, "meta": self.meta, "checksum": _checksum(arrays)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> History:
        """Read a saved History; a truncated or altered file raises ValueError."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            header = json.loads(arrays.pop("header").tobytes().decode())
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, json.JSONDecodeError) as e:
            raise ValueError(f"path must be a complete genlib History file; {str(path)!r} is not ({e})") from e
        if header.get("checksum") != _checksum(arrays):
            raise ValueError(f"path must be a complete genlib History file; {str(path)!r} fails its checksum")
        metrics = {k.removeprefix("metric/"): v for k, v in arrays.items() if k.startswith("metric/")}
        return cls(arrays["steps"], metrics, header["members"], header["meta"])


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        buf = io.BytesIO()
        np.save(buf, arrays[name], allow_pickle=False)
        h.update(name.encode())
        h.update(buf.getvalue())
    return h.hexdigest()
