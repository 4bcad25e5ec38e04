"""The chapters' claims: the assert behind each sentence, and what it does at an unverified scale.

Every chapter checks what its prose says with ``claim(holds, "the sentence")``. At quick scale a
claim is an assertion. The claims were written against quick runs; full scale changes the sizes,
so until a full run of a chapter has been recorded in ``full_runs.json`` (next to this file),
a claim at full scale is reported, with the outcome measured, as "not yet verified at full
scale" and not asserted. With ``GENLIB_CLAIMS_REPORT`` set to a directory, every outcome is also
written there as ``<chapter>-<scale>.json``, which is how a full run gets recorded.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..core._validate import check_choice
from ..running.scale import SCALES, current_scale

FULL_RUNS = Path(__file__).parent / "full_runs.json"


def full_runs() -> dict:
    """{chapter: {"date", "hardware", "wall_s", "claims_held"}} for every recorded full-scale run."""
    return json.loads(FULL_RUNS.read_text()) if FULL_RUNS.exists() else {}


def verified(chapter: str, scale: str) -> bool:
    """Whether the chapter's claims are asserted at this scale: always at quick, at full once recorded."""
    if scale == "quick":
        return True
    return bool(full_runs().get(chapter, {}).get("claims_held", False))


class Claims:
    """``claim = Claims("grokking")``, then ``claim(delay.min() >= 10, "grokking comes >= 10x later")``."""

    def __init__(self, chapter: str, scale: str | None = None):
        if not chapter or not chapter.replace("_", "").isalnum():
            raise ValueError(f"chapter must be a notebook's name such as 'grokking'; got {chapter!r}")
        self.chapter = chapter
        self.scale = current_scale() if scale is None else check_choice("scale", scale, SCALES)
        self.asserting = verified(chapter, self.scale)
        self.outcomes: list[tuple[str, bool]] = []

    def __call__(self, holds, sentence: str) -> bool:
        holds = bool(holds)
        self.outcomes.append((sentence, holds))
        self._report()
        if self.asserting:
            assert holds, sentence
        elif not holds:
            print(f"not yet verified at {self.scale} scale, and it did not hold in this run: {sentence}")
        return holds

    def _report(self) -> None:
        directory = os.environ.get("GENLIB_CLAIMS_REPORT")
        if not directory:
            return
        path = Path(directory) / f"{self.chapter}-{self.scale}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        held = [s for s, ok in self.outcomes if ok]
        failed = [s for s, ok in self.outcomes if not ok]
        path.write_text(json.dumps({"chapter": self.chapter, "scale": self.scale, "held": held, "failed": failed},
                                   indent=1))

    def status(self) -> str:
        """One line for the top of a chapter: how its claims are checked at this scale."""
        if self.asserting:
            return f"{self.scale} scale: every claim in the text is asserted on this run"
        return (f"{self.scale} scale has not been verified for this chapter yet: its claims are checked and "
                "reported, not asserted")
