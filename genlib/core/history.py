"""The record of a run: tidy arrays over (axis point, member) for each metric.

For a training run the axis is the training step; a closed-form sweep records along another
axis (the number of features, of training examples, a weight scale...), and names it. Members are
labelled by the experiment (``{"weight_decay": 1.0, "seed": 2}``), so ``select(weight_decay=1.0)``
finds them whatever their position.
"""
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

STEP = "step"


@dataclass
class History:
    """axis: (T,) values named ``axis_name``; metrics[name]: (T, S); members: one label dict per
    member; arrays[name]: (S, ...) per-member results that are not metrics (e.g. fitted curves)."""

    axis: np.ndarray
    metrics: dict[str, np.ndarray]
    members: list[dict]
    meta: dict = field(default_factory=dict)
    axis_name: str = STEP
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def steps(self) -> np.ndarray:
        """(T,) training steps at which the metrics were recorded (training runs only)."""
        if self.axis_name != STEP:
            raise AttributeError(f"this History's axis is {self.axis_name!r}, not training steps: use .axis")
        return self.axis

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

    def median(self, name: str) -> np.ndarray:
        """(T,) median over members (NaN entries ignored)."""
        return np.nanmedian(self[name], axis=1)

    def band(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median, lowest, highest) over members, each (T,): the line and shade of a seed band."""
        values = self[name]
        return np.nanmedian(values, 1), np.nanmin(values, 1), np.nanmax(values, 1)

    def first_step(self, name: str, threshold: float, above: bool = True) -> np.ndarray:
        """(S,) first axis value where the metric is >= (or <=) threshold; NaN where never."""
        values = self[name]
        hit = values >= threshold if above else values <= threshold
        first = np.where(hit.any(0), hit.argmax(0), -1)
        return np.where(first >= 0, self.axis[np.maximum(first, 0)], np.nan).astype(float)

    def zero_error_step(self) -> np.ndarray:
        """(S,) first step at which a member classifies its whole training set; NaN where never."""
        return self.first_step("train_acc", 1.0)

    def at(self, name: str, steps) -> np.ndarray:
        """(S,) each member's value of a metric at its own axis value ``steps[s]`` (one per member,
        each an axis value at which the metric was recorded); NaN where a step is NaN."""
        steps = np.asarray(steps, dtype=float)
        if steps.shape != (len(self.members),):
            raise ValueError(f"steps must hold one axis value per member ({len(self.members)}); "
                             f"got shape {steps.shape}")
        values = self[name]
        precision = np.result_type(values.dtype, np.float16)  # the metric's own (float32 stays float32)
        out = np.full(len(self.members), np.nan, dtype=precision)
        for s, t in enumerate(steps):
            if np.isnan(t):
                continue
            where = np.flatnonzero(self.axis == t)
            if not len(where):
                raise ValueError(f"steps must be axis values of this History; got {t:g} for member {s}")
            out[s] = values[where[0], s]
        return out

    def labels(self, name: str) -> list:
        """Every member's value of one label, in member order."""
        return [m.get(name) for m in self.members]

    def select(self, **where) -> History:
        """The members whose labels match, e.g. ``select(weight_decay=1.0)``."""
        keep = [i for i, m in enumerate(self.members) if all(m.get(k) == v for k, v in where.items())]
        if not keep:
            raise ValueError(f"no member matches {where}; members: {self.members}")
        return History(
            self.axis,
            {k: v[:, keep] for k, v in self.metrics.items()},
            [self.members[i] for i in keep],
            dict(self.meta),
            self.axis_name,
            {k: v[keep] for k, v in self.arrays.items()},
        )

    # --- storage: one .npz whose payload carries its own checksum, written atomically ---

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, then rename over ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"axis": self.axis, **{f"metric/{k}": v for k, v in self.metrics.items()},
                  **{f"array/{k}": v for k, v in self.arrays.items()}}
        header = {"members": self.members, "meta": self.meta, "axis_name": self.axis_name,
                  "checksum": _checksum(arrays)}
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
        if header.get("checksum") != _checksum(arrays) or "axis" not in arrays:
            raise ValueError(f"path must be a complete genlib History file; {str(path)!r} fails its checksum")

        def part(prefix: str) -> dict[str, np.ndarray]:
            return {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}

        return cls(arrays["axis"], part("metric/"), header["members"], header["meta"], header["axis_name"],
                   part("array/"))


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        buf = io.BytesIO()
        np.save(buf, arrays[name], allow_pickle=False)
        h.update(name.encode())
        h.update(buf.getvalue())
    return h.hexdigest()
