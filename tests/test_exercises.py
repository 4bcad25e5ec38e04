import pytest
import torch

from genlib.pages.exercises import check_perpendicular_gradient, check_stablemax


def right_stablemax(x):
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))
    return s / s.sum(-1, keepdim=True)


def test_stablemax_check_passes_a_correct_answer(capsys):
    assert check_stablemax(right_stablemax)
    assert "✓" in capsys.readouterr().out


def test_stablemax_check_explains_a_wrong_answer(capsys):
    def wrong(x):  # forgets the 1 - x for negative logits
        s = torch.where(x >= 0, x + 1, 1 / (-x.clamp(max=0) + 2))
        return s / s.sum(-1, keepdim=True)

    assert not check_stablemax(wrong)
    out = capsys.readouterr().out
    assert "✗" in out and "largest difference" in out and "expected" in out


def test_stablemax_check_rejects_softmax_and_a_wrong_shape(capsys):
    assert not check_stablemax(lambda x: torch.softmax(x, -1))
    assert not check_stablemax(lambda x: right_stablemax(x)[:, :5])
    assert "shape" in capsys.readouterr().out


def test_perpendicular_gradient_check(capsys):
    def right(w, g):
        perp = g - (w * g).sum() / (w * w).sum() * w
        return perp * g.norm() / perp.norm()

    def no_rescale(w, g):
        return g - (w * g).sum() / (w * w).sum() * w

    assert check_perpendicular_gradient(right)
    assert not check_perpendicular_gradient(no_rescale)
    assert not check_perpendicular_gradient(lambda w, g: g)


def test_ridge_check(capsys):
    from genlib.pages.exercises import check_ridge

    def right(features, targets, ridge):
        n, width = features.shape
        gram = features.T @ features + n * ridge * torch.eye(width, dtype=features.dtype)
        return torch.linalg.solve(gram, features.T @ targets)

    def unscaled_penalty(features, targets, ridge):  # forgets the factor n
        gram = features.T @ features + ridge * torch.eye(features.shape[1], dtype=features.dtype)
        return torch.linalg.solve(gram, features.T @ targets)

    assert check_ridge(right)
    assert "✓" in capsys.readouterr().out
    assert not check_ridge(unscaled_penalty)
    assert "largest difference" in capsys.readouterr().out
    assert not check_ridge(lambda f, t, r: (f.T @ t)[:, :1])
    assert "shape" in capsys.readouterr().out


def test_label_noise_check(capsys):
    from genlib.pages.exercises import check_label_noise

    def right(labels, fraction, num_classes, generator):
        labels = labels.clone()
        chosen = torch.randperm(len(labels), generator=generator)[: round(fraction * len(labels))]
        labels[chosen] = (labels[chosen] + torch.randint(1, num_classes, (len(chosen),), generator=generator)) % 10
        return labels

    def may_keep_the_class(labels, fraction, num_classes, generator):
        labels = labels.clone()
        chosen = torch.randperm(len(labels), generator=generator)[: round(fraction * len(labels))]
        labels[chosen] = torch.randint(0, num_classes, (len(chosen),), generator=generator)
        return labels

    assert check_label_noise(right) and "✓" in capsys.readouterr().out
    assert not check_label_noise(may_keep_the_class) and "exactly 1500" in capsys.readouterr().out
    assert not check_label_noise(lambda labels, *a: (labels + 1) % 10)
    assert "exactly 1500" in capsys.readouterr().out


def test_spectral_centroid_check(capsys):
    from genlib.core.metrics import spectral_centroid
    from genlib.pages.exercises import check_spectral_centroid

    def unmirrored(outputs):
        spectrum = torch.fft.rfft(outputs - outputs.mean(-1, keepdim=True), dim=-1).abs()[:, 1:]
        k = torch.arange(1, spectrum.shape[-1] + 1, dtype=spectrum.dtype)
        return (spectrum * k).sum(-1) / spectrum.sum(-1)

    assert check_spectral_centroid(spectral_centroid) and "✓" in capsys.readouterr().out
    assert not check_spectral_centroid(unmirrored) and "largest difference" in capsys.readouterr().out


def test_mup_scales_check(capsys):
    from genlib.pages.exercises import check_mup_scales

    def right(fan_in, fan_out):
        if fan_in is None:
            return 1.0, 1.0 if fan_out is None else fan_out, 1.0
        if fan_out is None:
            return fan_in**-0.5, 1 / fan_in, 1 / fan_in
        return 1.0, 1.0, 1 / fan_in

    def sgd_for_adam(fan_in, fan_out):  # swaps the two step-size rules
        init, sgd, adam = right(fan_in, fan_out)
        return init, adam, sgd

    assert check_mup_scales(right) and "✓" in capsys.readouterr().out
    assert not check_mup_scales(sgd_for_adam) and "largest difference" in capsys.readouterr().out
    assert not check_mup_scales(lambda a, b: 1.0) and "three numbers" in capsys.readouterr().out


def test_a_check_returns_its_verdict_and_prints_it(capsys):
    from genlib.pages.exercises import CheckResult

    passed = check_stablemax(right_stablemax)
    assert isinstance(passed, CheckResult) and passed.passed and passed  # bool(result) is passed
    assert passed.message.startswith("✓") and capsys.readouterr().out == passed.message + "\n"
    failed = check_stablemax(lambda x: torch.softmax(x, -1))
    assert not failed and not failed.passed and failed.message.startswith("✗ StableMax: largest difference")
    assert capsys.readouterr().out == failed.message + "\n"
    if not check_stablemax(right_stablemax):  # as the notebooks use it
        raise AssertionError


def test_a_result_adds_nothing_under_a_notebook_cell():
    """In Jupyter the printed verdict is the cell's output: no stray True or CheckResult(...) after it."""
    from IPython.core.formatters import DisplayFormatter

    from genlib.pages.exercises import CheckResult

    shown, _ = DisplayFormatter().format(CheckResult(True, "✓ fine"))
    assert shown == {}



def test_path_norm_check(capsys):
    from genlib.pages.exercises import check_path_norm

    def right(weights):
        h = torch.ones(1, weights[0].shape[0], dtype=weights[0].dtype)
        for w in weights:
            h = h @ w.pow(2)
        return h.sum()

    def unsquared(weights):
        h = torch.ones(1, weights[0].shape[0], dtype=weights[0].dtype)
        for w in weights:
            h = h @ w.abs()
        return float(h.sum())

    assert check_path_norm(right) and "✓" in capsys.readouterr().out
    assert not check_path_norm(unsquared) and "square every weight first" in capsys.readouterr().out
    assert not check_path_norm(lambda weights: "one") and "one number" in capsys.readouterr().out


def test_fgsm_check(capsys):
    import torch.nn.functional as F

    from genlib.pages.exercises import check_fgsm

    def right(forward, x, labels, eps):
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(x).flatten(0, 1), labels.flatten()), x)
        return (x + eps * grad.sign()).detach()

    assert check_fgsm(right) and check_fgsm(right, seed=3) and "✓ FGSM" in capsys.readouterr().out
    descent = lambda forward, x, labels, eps: 2 * x - right(forward, x, labels, eps)  # noqa: E731
    assert not check_fgsm(descent) and "against the loss's gradient" in capsys.readouterr().out
    raw = lambda forward, x, labels, eps: x + eps * torch.ones_like(x)  # noqa: E731
    assert not check_fgsm(raw) and "largest difference" in capsys.readouterr().out


# Answers that are right only because they call genlib's own function: each passes the plain check.
def _cheats():
    from genlib.core.losses import stablemax  # bound to a name before grading, as a notebook would
    from genlib.core.metrics import spectral_centroid
    from genlib.core.models import mup_scales
    from genlib.core.optim import perpendicular_gradient
    from genlib.measures.collapse import within_class_variation
    from genlib.measures.regression import SpectralSolver
    from genlib.measures.robustness import fgsm
    from genlib.pages import exercises

    def ridge(features, targets, lam):
        solver = SpectralSolver(features)
        return solver.weights(targets, solver.ridge(lam))

    return {
        exercises.check_stablemax: lambda x: stablemax(x),
        exercises.check_perpendicular_gradient: lambda w, g: perpendicular_gradient(w[None], g[None])[0],
        exercises.check_ridge: ridge,
        exercises.check_spectral_centroid: lambda outputs: spectral_centroid(outputs),
        exercises.check_mup_scales: lambda a, b: tuple(mup_scales(a, b).values()),
        exercises.check_nc1: lambda f, labels, k: float(within_class_variation(f[None], labels[None], k)[0]),
        exercises.check_fgsm: lambda forward, x, labels, eps: fgsm(forward, x, labels, eps),
    }


@pytest.mark.parametrize("check", list(_cheats()), ids=lambda c: c.__name__)
def test_grade_fails_an_answer_that_calls_genlibs_reference(check, capsys):
    from genlib.pages.exercises import HIDDEN, grade

    cheat = _cheats()[check]
    assert check(cheat, seed=1)  # right, when genlib is there to call
    result = grade(check, cheat, seed=1)
    assert not result and HIDDEN in result.message and result.message in capsys.readouterr().out
    assert check(cheat, seed=1)  # and genlib's functions are back afterwards


def test_grade_passes_a_correct_answer_at_every_seed():
    from genlib.pages.exercises import grade

    assert all(grade(check_stablemax, right_stablemax, seed=seed) for seed in (0, 1, 2))
    assert not grade(check_stablemax, lambda x: torch.softmax(x, -1), seed=1)


def test_every_check_names_the_references_it_hides():
    """A new check must say which genlib functions solve its exercise, and each of them is hidden."""
    from genlib.pages import exercises

    checks = {name for name in dir(exercises) if name.startswith("check_")}
    assert checks == set(exercises.REFERENCES)
    for name, paths in exercises.REFERENCES.items():
        functions = [f for path in paths for f in exercises._functions_of(exercises._resolve(path), path)]
        assert functions, name
        with exercises._hidden(functions):
            for function, path in functions:
                with pytest.raises(RuntimeError, match=f"{path} {exercises.HIDDEN}"):
                    function(None)
        assert all(f.__code__.co_name != "hidden" for f, _ in functions)  # restored


def test_grade_gives_back_genlibs_functions_when_the_answer_raises():
    from genlib.core.losses import stablemax
    from genlib.pages.exercises import grade

    def broken(x):
        raise ValueError("a bug in the answer")

    with pytest.raises(ValueError, match="a bug"):
        grade(check_stablemax, broken)
    assert torch.allclose(stablemax(torch.zeros(1, 4)), torch.full((1, 4), 0.25))
