"""Grading the auto-checked exercises with otter-grader (grading/, made by scripts/editions.py).

Each grading/<chapter>.ipynb is an otter master notebook. In this process, for every question: the
reference answer passes its public test (seed 0) and its hidden ones (seeds 1 and 2); the student's
stub, a wrong answer and an answer that calls genlib's own function fail every one. Then otter itself,
on the grokking chapter: ``otter assign`` makes the student notebook (no solution, no hidden test)
and the Gradescope autograder, running the tests on the reference as it does, and ``otter run``
(no Docker) grades the reference at full points and a wrong and a cheating answer at none.
"""
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from otter.assign.solutions import replace_solutions  # what otter assign does to an answer cell

ROOT = Path(__file__).resolve().parents[1]
MASTERS = sorted((ROOT / "grading").glob("*.ipynb"))
WRONG = "import torch\n\ndef {f}(*args, **kwargs):\n    return torch.zeros(1, dtype=torch.float64)\n"
CHEATS = {  # right answers, but only because they call genlib's reference
    "stablemax": "from genlib.core.losses import stablemax\n\ndef {f}(x):\n    return stablemax(x)\n",
    "perpendicular_gradient": ("from genlib.core.optim import perpendicular_gradient\n\ndef {f}(w, g):\n"
                               "    return perpendicular_gradient(w[None], g[None])[0]\n"),
    "ridge": ("from genlib.measures.regression import SpectralSolver\n\ndef {f}(features, targets, lam):\n"
              "    solver = SpectralSolver(features)\n    return solver.weights(targets, solver.ridge(lam))\n"),
    "spectral_centroid": "from genlib.core.metrics import spectral_centroid\n\ndef {f}(outputs):\n"
                         "    return spectral_centroid(outputs)\n",
    "nc1": ("from genlib.measures.collapse import within_class_variation\n\ndef {f}(features, labels, k):\n"
            "    return float(within_class_variation(features[None], labels[None], k)[0])\n"),
}


def questions(path: Path) -> list[dict]:
    """[{"name", "points", "solution", "tests": [(source, hidden)]}] of a master notebook."""
    found, block = [], None
    for cell in nbformat.read(path, as_version=4).cells:
        source = cell.source.strip()
        if cell.cell_type == "raw" and source.startswith("# BEGIN QUESTION"):
            config = dict(line.split(": ", 1) for line in source.split("\n")[1:])
            found.append({"name": config["name"], "points": int(config["points"]), "tests": []})
        elif cell.cell_type == "raw" and re.match(r"# (BEGIN|END) \w+", source):
            block = source.split()[2] if source.startswith("# BEGIN") else None
        elif block == "SOLUTION":
            found[-1]["solution"] = cell.source
        elif block == "TESTS":
            found[-1]["tests"].append((cell.source, cell.source.startswith("# HIDDEN")))
    return found


ALL = [(path, q) for path in MASTERS for q in questions(path)]


def test_every_auto_checked_exercise_is_a_question_worth_three_points():
    names = [q["name"] for _, q in ALL]
    assert sorted(names) == sorted(checks.removeprefix("check_") for checks in _checks_in_the_book())
    for _, question in ALL:
        seeds = [int(re.search(r"seed=(\d+)", source).group(1)) for source, _ in question["tests"]]
        assert seeds == [0, 1, 2] and question["points"] == 3
        assert [hidden for _, hidden in question["tests"]] == [False, True, True]  # public at seed 0 only


def _checks_in_the_book() -> list[str]:
    text = "\n".join(c.source for p in sorted((ROOT / "book").glob("*.ipynb"))
                     for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
    return sorted(set(re.findall(r"^(check_\w+)\(", text, re.M)))


def run_tests(question: dict, answer: str) -> list[str | None]:
    """Run the answer cell (without its check call), then each test cell, in one namespace; each
    test's error (None: passed)."""
    namespace: dict = {}
    exec(re.sub(r"^check_\w+\(.*$", "", answer, flags=re.M), namespace)  # the tests make the same check
    errors = []
    for source, _ in question["tests"]:
        try:
            exec(source, namespace)
            errors.append(None)
        except Exception as error:  # noqa: BLE001 (any error fails the test, as in otter)
            errors.append(f"{type(error).__name__}: {error}")
    return errors


def answer_function(question: dict) -> str:
    return re.search(r"^def test_\w+\((\w+)\)", question["tests"][0][0], re.M).group(1)


@pytest.mark.parametrize(("path", "question"), ALL, ids=[f"{p.stem}-{q['name']}" for p, q in ALL])
def test_the_reference_passes_and_other_answers_fail(path, question, capsys):
    assert run_tests(question, question["solution"]) == [None, None, None]
    student = "\n".join(replace_solutions(question["solution"].split("\n"), "python"))
    assert 'raise NotImplementedError("your code here")' in student and "# BEGIN" not in student
    assert all(error and "NotImplementedError" in error for error in run_tests(question, student))
    f = answer_function(question)
    wrong = run_tests(question, WRONG.format(f=f))
    assert all(error and error.startswith("AssertionError: ✗") for error in wrong), wrong
    if question["name"] in CHEATS:
        cheat = run_tests(question, CHEATS[question["name"]].format(f=f))
        assert all(error and "is not available while your answer is graded" in error for error in cheat), cheat


def otter(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "otter", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"otter {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def assigned(tmp_path_factory):
    """otter assign on grading/grokking.ipynb (it also runs the tests on the reference and fails if one fails)."""
    out = tmp_path_factory.mktemp("otter") / "dist"
    otter("assign", str(ROOT / "grading" / "grokking.ipynb"), str(out), cwd=ROOT)
    return out


def test_otter_assign_makes_a_student_notebook_without_solutions_or_hidden_tests(assigned):
    student = (assigned / "student" / "grokking.ipynb").read_text()
    assert student.count('raise NotImplementedError(\\"your code here\\")') == 2
    assert "x.clamp(max=0)" not in student and "perp.norm()" not in student  # the two solutions
    assert "seed=1" not in student and "seed=2" not in student and "HIDDEN" not in student
    assert "grader" not in student and "otter" not in json.loads(student)["cells"][0]["source"]  # genlib only
    (autograder,) = (assigned / "autograder").glob("grokking-autograder_*.zip")
    with zipfile.ZipFile(autograder) as zipped:
        tests = zipped.read("tests/stablemax.py").decode()
        requirements = zipped.read("environment.yml").decode()  # what Gradescope installs
    assert "seed=0" in tests and "seed=1" in tests and "seed=2" in tests and tests.count("hidden=True") == 2
    assert re.search(r"genlib-book @ git\+https://github\.com/\S+@v\d", requirements)


def grade(assigned: Path, submission: Path) -> dict[str, float]:
    (autograder,) = (assigned / "autograder").glob("grokking-autograder_*.zip")
    out = submission.parent / f"{submission.stem}-results"
    out.mkdir()
    otter("run", "-a", str(autograder), "-o", str(out), str(submission), cwd=submission.parent)
    results = json.loads((out / "results.json").read_text())
    return {t["name"]: t["score"] for t in results["tests"] if "score" in t} | {"output": json.dumps(results)}


def test_otter_grades_the_reference_at_full_points(assigned, tmp_path):
    submission = tmp_path / "reference.ipynb"
    submission.write_text((assigned / "autograder" / "grokking.ipynb").read_text())
    scores = grade(assigned, submission)
    assert scores["stablemax"] == 3 and scores["perpendicular_gradient"] == 3, scores["output"]


def test_otter_gives_no_points_to_a_wrong_or_a_cheating_answer(assigned, tmp_path):
    notebook = nbformat.read(assigned / "student" / "grokking.ipynb", as_version=4)
    stub = 'raise NotImplementedError("your code here")'
    answers = [c for c in notebook.cells if stub in c.source]
    answers[0].source = answers[0].source.replace(stub, "return torch.softmax(x, -1)")  # wrong
    answers[1].source = answers[1].source.replace(stub, (  # right, through genlib's reference
        "from genlib.core.optim import perpendicular_gradient\n"
        "    return perpendicular_gradient(w[None], g[None])[0]"))
    submission = tmp_path / "submission.ipynb"
    nbformat.write(notebook, submission)
    scores = grade(assigned, submission)
    assert scores["stablemax"] == 0 and scores["perpendicular_gradient"] == 0, scores["output"]
    assert "largest difference" in scores["output"] and "is not available while your answer is graded" in scores[
        "output"]
