"""genlib.pages.claims: asserted at quick scale, reported (not asserted) at a full scale never recorded."""
import json
from pathlib import Path

import pytest

from genlib.pages import claims
from genlib.pages.claims import Claims

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "book").glob("*.ipynb"))


def test_quick_scale_asserts():
    claim = Claims("grokking", scale="quick")
    assert claim(True, "holds") is True
    with pytest.raises(AssertionError, match="the delay is 10x"):
        claim(False, "the delay is 10x")


def test_unrecorded_full_scale_reports_and_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(claims, "FULL_RUNS", tmp_path / "none.json")
    claim = Claims("grokking", scale="full")
    assert claim(False, "the delay is 10x") is False  # no exception
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
    assert report == {"chapter": "memorization", "scale": "full", "held": ["first"], "failed": ["second"]}


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
    record = claims.full_runs()
    for notebook in NOTEBOOKS:
        row = next((line for line in page.splitlines() if line.startswith(f"| {{doc}}`{notebook.stem}`")), None)
        assert row, f"the timing page has no row for {notebook.stem}"
        run = record.get(notebook.stem)
        if run is None:
            assert "not yet run" in row, f"{notebook.stem}: no full run is recorded, the page must say so"
        else:
            assert run["date"] in row and run["hardware"] in row, f"{notebook.stem}: the page and the record differ"
