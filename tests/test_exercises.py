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
