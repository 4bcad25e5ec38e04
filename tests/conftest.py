import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Each test gets its own cache folder, quick scale and no progress bars."""
    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GENLIB_SCALE", "quick")
    monkeypatch.setenv("GENLIB_PROGRESS", "0")
    torch.set_num_threads(2)


@pytest.fixture
def tiny_digits():
    """Two members, 100 training digits each, 20% relabelled."""
    from genlib.core.data import digits

    return digits(100, [0, 1], 0.2)
