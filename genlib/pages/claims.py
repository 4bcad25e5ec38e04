"""The chapters' claims: the assert behind each sentence, and what it does at an unverified scale.

Every chapter checks what its prose says with ``claim(holds, "the sentence")``. At quick scale a
claim is an assertion. The claims were written against quick runs; full scale changes the sizes,
so until a full run of a chapter has been recorded in ``full_runs.json`` (next to this file),
a claim at full scale is reported, with the outcome measured, as "not yet verified at full
scale" and not asserted. With ``GENLIB_CLAIMS_REPORT`` set to a directory, every outcome is also
written there as ``<chapter>-<scale>.json``, which is how a full run gets recorded; while one is
being recorded (``GENLIB_RECORDING_FULL_RUN`` set) a full-scale claim is reported and not asserted
even in a recorded chapter, so that a new run whose claim fails still reports every other claim.

Under IPython (Jupyter, Colab, the book's build) each cell that checks claims or glues numbers ends
with one compact list of them (a ``ClaimsList``): the sentences checked, whether each held, and the
numbers the text quotes. That list is the cell's only output besides its figures, so the code that
computes it can be folded away in the HTML.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core._validate import check_choice
from ..running.scale import SCALES, current_scale
from .plots import figures_of
from .prose import glued_since_last_taken

FULL_RUNS = Path(__file__).parent / "full_runs.json"
RECORDING = "GENLIB_RECORDING_FULL_RUN"  # set by scripts/record_full_run.py


def full_runs() -> dict:
    """{chapter: {"date", "hardware", "wall_s", "claims_held"}} for every recorded full-scale run."""
    return json.loads(FULL_RUNS.read_text()) if FULL_RUNS.exists() else {}


def verified(chapter: str, scale: str) -> bool:
    """Whether the chapter's claims are asserted at this scale: always at quick, at full once recorded
    (and not while a full run is being recorded)."""
    if scale == "quick":
        return True
    if os.environ.get(RECORDING):
        return False
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
        self._listed = 0  # outcomes already shown in a list
        figures_of(chapter)  # figures exported for slides ($GENLIB_FIGURES) are named after the chapter
        _list_after_each_cell(self)

    def __call__(self, holds, sentence: str, scales: tuple[str, ...] = SCALES) -> None:
        """Check one sentence. Returns nothing, so a cell that ends with a claim prints no stray value.

        ``scales``: where the text makes the claim. A sentence the text limits to quick scale (a full run
        showed it does not carry over, and the text says so) passes ``scales=("quick",)``: at full scale
        it is listed as not claimed, neither asserted nor counted as failed."""
        for scale in scales:
            check_choice("scales", scale, SCALES)
        if self.scale not in scales:
            self.outcomes.append((sentence, None))
            self._report()
            return
        holds = bool(holds)
        self.outcomes.append((sentence, holds))
        self._report()
        if self.asserting:
            assert holds, sentence
        elif not holds:
            print(f"not yet verified at {self.scale} scale, and it did not hold in this run: {sentence}")

    def new_listing(self) -> ClaimsList | None:
        """The claims checked and the numbers glued since the last listing (None if there are none)."""
        claims, numbers = self.outcomes[self._listed:], glued_since_last_taken()
        self._listed = len(self.outcomes)
        if not claims and not numbers:
            return None
        return ClaimsList(claims, numbers, self.scale, self.asserting)

    def _report(self) -> None:
        directory = os.environ.get("GENLIB_CLAIMS_REPORT")
        if not directory:
            return
        path = Path(directory) / f"{self.chapter}-{self.scale}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        held = [s for s, ok in self.outcomes if ok]
        failed = [s for s, ok in self.outcomes if ok is False]
        unclaimed = [s for s, ok in self.outcomes if ok is None]
        path.write_text(json.dumps({"chapter": self.chapter, "scale": self.scale, "held": held, "failed": failed,
                                    "not_claimed": unclaimed}, indent=1))

    def status(self) -> str:
        """One line for the top of a chapter: how its claims are checked at this scale."""
        if self.asserting:
            return f"{self.scale} scale: every claim in the text is asserted on this run"
        return (f"{self.scale} scale has not been verified for this chapter yet: its claims are checked and "
                "reported, not asserted")


MARKS = {True: "✓", False: "✗", None: "–"}  # held, did not hold, not made at this scale
CLASSES = {True: "held", False: "failed", None: "not-claimed"}


@dataclass
class ClaimsList:
    """What one cell checked: each sentence with ✓ or ✗, and the numbers its text quotes."""

    claims: list[tuple[str, bool | None]]  # None: the text does not make this claim at this scale
    numbers: list[tuple[str, str]]
    scale: str
    asserted: bool

    def heading(self) -> str:
        made = [ok for _, ok in self.claims if ok is not None]
        how = "asserted" if self.asserted else "checked, not asserted (scale not yet verified)"
        skipped = len(self.claims) - len(made)
        other = f"; {skipped} made at another scale only, not checked" if skipped else ""
        return f"{sum(made)} of {len(made)} claims held on this run ({self.scale} scale, {how}{other})"

    def grouped(self) -> list[tuple[str, bool]]:
        """The claims with a repeated check (one per seed, say) shown once, its count appended."""
        rows: list[tuple[str, bool, int]] = []
        for sentence, ok in self.claims:
            if rows and rows[-1][:2] == (sentence, ok):
                rows[-1] = (sentence, ok, rows[-1][2] + 1)
            else:
                rows.append((sentence, ok, 1))
        return [(sentence if n == 1 else f"{sentence} ({n} checks)", ok) for sentence, ok, n in rows]

    def __repr__(self) -> str:
        lines = [self.heading()] if self.claims else []
        lines += [f"  {MARKS[ok]} {sentence}" for sentence, ok in self.grouped()]
        if self.numbers:
            lines.append("numbers in the text: " + ", ".join(f"{name} = {value}" for name, value in self.numbers))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = ['<div class="genlib-claims">']
        if self.claims:
            parts.append(f'<p class="genlib-claims-heading">{html.escape(self.heading())}</p><ul>')
            parts += [f'<li class="{CLASSES[ok]}">{MARKS[ok]} {html.escape(sentence)}</li>'
                      for sentence, ok in self.grouped()]
            parts.append("</ul>")
        if self.numbers:
            shown = ", ".join(f"<code>{html.escape(name)}</code>&nbsp;=&nbsp;{html.escape(value)}"
                              for name, value in self.numbers)
            parts.append(f'<p class="genlib-claims-numbers">Numbers in the text: {shown}</p>')
        return "".join(parts) + "</div>"


def _list_after_each_cell(claims: Claims) -> None:
    """Under IPython, show ``claims.new_listing()`` under every cell that produced one.

    One chapter, one hook: running the set-up cell again replaces the previous chapter's hook.
    """
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def show(result) -> None:
        listing = claims.new_listing()
        if listing is not None and result.success:  # after a failed claim, the traceback says it
            display(listing)

    show.genlib_claims = True
    for hook in [h for h in shell.events.callbacks["post_run_cell"] if getattr(h, "genlib_claims", False)]:
        shell.events.unregister("post_run_cell", hook)
    shell.events.register("post_run_cell", show)
