import pytest

from genlib.running.scale import by_scale, current_scale


def test_env_chooses_the_scale(monkeypatch):
    monkeypatch.setenv("GENLIB_SCALE", "full")
    assert current_scale() == "full" and by_scale(1, 2) == 2
    monkeypatch.setenv("GENLIB_SCALE", "quick")
    assert by_scale(1, 2) == 1 and by_scale(1, 2, scale="full") == 2


def test_quick_is_the_default_with_or_without_cuda(monkeypatch):
    monkeypatch.delenv("GENLIB_SCALE")
    for cuda in (True, False):
        monkeypatch.setattr("torch.cuda.is_available", lambda cuda=cuda: cuda)
        assert current_scale() == "quick", "full scale is only ever asked for (GENLIB_SCALE=full)"


def test_unknown_scale(monkeypatch):
    monkeypatch.setenv("GENLIB_SCALE", "huge")
    with pytest.raises(ValueError, match="GENLIB_SCALE"):
        current_scale()
