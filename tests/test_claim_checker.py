"""genlib.pages.claims: asserted at quick scale, reported (not asserted) at a full scale never recorded."""
import json
from pathlib import Path

import pytest

from genlib.pages import claims
from genlib.pages.claims import Claims

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "book").glob("*.ipynb"))


def test_quick_scale_asserts():
    claim = Claims("grokking", scale="quick")
    assert claim(True, "holds") is None  # nothing for a notebook cell to print
    with pytest.raises(AssertionError, match="the delay is 10x"):
        claim(False, "the delay is 10x")
    assert claim.outcomes == [("holds", True), ("the delay is 10x", False)]


def test_unrecorded_full_scale_reports_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(claims, "FULL_RUNS", tmp_path / "none.json")
    claim = Claims("grokking", scale="full")
    claim(False, "the delay is 10x")  # no exception
    assert claim.outcomes == [("the delay is 10x", False)]
    assert "not yet verified at full scale" in capsys.readouterr().out
    assert "not been verified" in claim.status()


def test_recorded_full_run_makes_claims_asserts(tmp_path, monkeypatch):
    record = tmp_path / "full_runs.json"
    record.write_text(json.dumps({"grokking": {"claims_held": True, "date": "2026-11-24", "hardware": "cpu"}}))
    monkeypatch.setattr(claims, "FULL_RUNS", record)
    with pytest.raises(AssertionError):
        Claims("grokking", scale="full")(False, "the delay is 10x")
    Claims("spectral_bias", scale="full")(False, "another chapter is still unverified")


def test_outcomes_are_written_for_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CLAIMS_REPORT", str(tmp_path))
    monkeypatch.setattr(claims, "FULL_RUNS", tmp_path / "none.json")
    claim = Claims("memorization", scale="full")
    claim(True, "first")
    claim(False, "second")
    report = json.loads((tmp_path / "memorization-full.json").read_text())
    assert report == {"chapter": "memorization", "scale": "full", "held": ["first"], "failed": ["second"],
                      "not_claimed": []}


def test_a_claim_made_at_quick_scale_only_is_listed_but_not_checked_at_full(tmp_path, monkeypatch):
    record = tmp_path / "full_runs.json"
    record.write_text(json.dumps({"grokking": {"claims_held": True, "date": "2026-12-06", "hardware": "cpu"}}))
    monkeypatch.setattr(claims, "FULL_RUNS", record)
    monkeypatch.setenv("GENLIB_CLAIMS_REPORT", str(tmp_path))
    claim = Claims("grokking", scale="full")  # recorded: asserting
    claim(False, "holds at quick scale only", scales=("quick",))  # no exception
    claim(True, "holds everywhere")
    assert claim.outcomes == [("holds at quick scale only", None), ("holds everywhere", True)]
    listing = claim.new_listing()
    assert "1 of 1 claims held" in listing.heading() and "1 made at another scale only" in listing.heading()
    assert '<li class="not-claimed">– holds at quick scale only' in listing._repr_html_()
    report = json.loads((tmp_path / "grokking-full.json").read_text())
    assert report["failed"] == [] and report["not_claimed"] == ["holds at quick scale only"]
    with pytest.raises(AssertionError):
        Claims("grokking", scale="quick")(False, "still asserted at quick scale", scales=("quick",))
    with pytest.raises(ValueError, match="scales"):
        claim(True, "x", scales=("medium",))


def test_while_a_full_run_is_recorded_a_recorded_chapter_reports_its_claims_without_asserting(tmp_path, monkeypatch):
    record = tmp_path / "full_runs.json"
    record.write_text(json.dumps({"grokking": {"claims_held": True, "date": "2026-12-06", "hardware": "cpu"}}))
    monkeypatch.setattr(claims, "FULL_RUNS", record)
    monkeypatch.setenv("GENLIB_CLAIMS_REPORT", str(tmp_path))
    monkeypatch.setenv(claims.RECORDING, "1")
    claim = Claims("grokking", scale="full")
    claim(False, "fails in the new run")  # no exception
    claim(True, "holds in the new run")
    report = json.loads((tmp_path / "grokking-full.json").read_text())
    assert report["failed"] == ["fails in the new run"] and report["held"] == ["holds in the new run"]
    with pytest.raises(AssertionError):
        Claims("grokking", scale="quick")(False, "quick scale is asserted all the same")
    monkeypatch.delenv(claims.RECORDING)
    with pytest.raises(AssertionError):
        Claims("grokking", scale="full")(False, "asserted once the recording is over")


def test_chapter_name_and_scale_are_checked():
    with pytest.raises(ValueError, match="chapter"):
        Claims("../etc", scale="quick")
    with pytest.raises(ValueError, match="scale"):
        Claims("grokking", scale="fast")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_states_its_claims_through_the_checker(notebook):
    cells = ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code = "\n".join(cells)
    assert f'Claims("{notebook.stem}")' in code, f"{notebook.name} should create Claims for its own chapter"
    bare = [line.strip() for line in code.splitlines() if line.strip().startswith("assert ")]
    assert not bare, f"{notebook.name}: claims go through claim(...), so full scale reports them: {bare[:3]}"
    assert code.count("claim(") >= 10, f"{notebook.name} checks fewer than 10 claims"


def test_timing_page_lists_every_chapter_as_the_record_says():
    page = (Path(__file__).resolve().parents[1] / "book" / "timing.md").read_text()
    recorded = page.split("## Full scale: recorded runs", 1)[1].split("\n## ", 1)[0]  # other tables name chapters too
    record = claims.full_runs()
    for notebook in NOTEBOOKS:
        row = next((line for line in recorded.splitlines() if line.startswith(f"| {{doc}}`{notebook.stem}`")), None)
        assert row, f"the timing page has no row for {notebook.stem}"
        run = record.get(notebook.stem)
        if run is None:
            assert "not yet run" in row, f"{notebook.stem}: no full run is recorded, the page must say so"
        else:
            assert run["date"] in row and run["hardware"] in row, f"{notebook.stem}: the page and the record differ"


def test_each_listing_holds_the_claims_and_numbers_since_the_last_one():
    from genlib.pages.prose import glue, glued_since_last_taken

    glued_since_last_taken()  # start clean
    claim = Claims("grokking", scale="quick")
    claim(True, "the delay is >= 10x")
    claim(True, "every seed fits")
    claim(True, "every seed fits")
    glue("delay", 26.4, ".0f")
    listing = claim.new_listing()
    assert listing.numbers == [("delay", "26")] and len(listing.claims) == 3
    assert listing.grouped() == [("the delay is >= 10x", True), ("every seed fits (2 checks)", True)]
    assert claim.new_listing() is None, "a listing shows each claim once"
    assert "3 of 3 claims held" in repr(listing) and "delay = 26" in repr(listing)


def test_a_listing_marks_what_failed_and_escapes_html(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "FULL_RUNS", tmp_path / "none.json")
    claim = Claims("grokking", scale="full")  # unverified: reported, not asserted
    claim(False, "loss < 1e-3 & <b>bold</b>")
    claim(True, "accuracy >= 95%")
    page = claim.new_listing()._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>" not in page
    assert '<li class="failed">✗' in page and '<li class="held">✓' in page
    assert "1 of 2 claims held" in page and "not asserted" in page


def test_a_listing_shows_under_the_cell_in_ipython():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shown = []
    shell.display_pub.publish = lambda data, **kw: shown.append(data)
    shell.run_cell('from genlib.pages.claims import Claims\nclaim = Claims("grokking", scale="quick")')
    shell.run_cell('claim(1 + 1 == 2, "arithmetic holds")')
    shell.run_cell("x = 1")  # nothing new: nothing shown
    shell.run_cell('from genlib.pages.claims import Claims\nclaim = Claims("grokking", scale="quick")')  # re-run
    shell.run_cell('claim(True, "once")')
    listings = [d["text/plain"] for d in shown if "claims held" in d.get("text/plain", "")]
    assert listings == ["1 of 1 claims held on this run (quick scale, asserted)\n  ✓ arithmetic holds",
                        "1 of 1 claims held on this run (quick scale, asserted)\n  ✓ once"]
    InteractiveShell.clear_instance()
