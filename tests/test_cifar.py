"""genlib.core.cifar on a small archive in CIFAR-10's own layout (nothing is downloaded in the tests)."""
import hashlib
import io
import pickle
import tarfile
from dataclasses import replace

import numpy as np
import pytest

from genlib.core.cifar import ARCHIVE, DownloadError, cifar10, cifar10_archive


def fake_archive(path, per_batch=6):
    """CIFAR-10's python layout: cifar-10-batches-py/data_batch_1..5 and test_batch, each a pickled
    dict of b"data" (n, 3072) uint8 in channel-major order and b"labels"; returns its MD5."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as archive:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": list(rng.integers(0, 10, per_batch))}
            payload = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    source = tmp_path / "mirror" / ARCHIVE
    source.parent.mkdir()
    monkeypatch.setenv("GENLIB_CIFAR10_URL", source.as_uri())
    monkeypatch.setenv("GENLIB_CIFAR10_MD5", fake_archive(source))
    return source


def test_the_archive_is_fetched_once_verified_and_read_as_standardized_vectors(mirror, tmp_path):
    data = cifar10(n_train=20, n_test=4, seeds=[0, 1], directory=tmp_path / "data")
    assert (tmp_path / "data" / ARCHIVE).exists()
    assert data.x.shape == (24, 3072) and data.train_idx.shape == (2, 20) and data.num_classes == 10
    channels = data.x[:20].reshape(20, 3, 1024)
    np.testing.assert_allclose(channels.mean((0, 2)).numpy(), 0, atol=1e-5)  # standardized per channel
    np.testing.assert_allclose(channels.std((0, 2), unbiased=False).numpy(), 1, atol=1e-4)
    mirror.unlink()  # a second call reads the copy on disk, not the source
    assert cifar10(n_train=10, n_test=2, directory=tmp_path / "data").x.shape == (12, 3072)


def test_an_archive_with_the_wrong_checksum_is_refused(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CIFAR10_MD5", "0" * 32)
    with pytest.raises(DownloadError, match="MD5"):
        cifar10_archive(tmp_path / "data")


def test_without_a_network_the_error_says_where_to_put_the_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLIB_CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # nothing listens
    with pytest.raises(DownloadError, match="could not be downloaded") as error:
        cifar10_archive(tmp_path / "data")
    assert str(tmp_path / "data" / ARCHIVE) in str(error.value)
    assert not list((tmp_path / "data").iterdir()), "a failed download leaves nothing behind"


def test_sizes_are_checked(mirror, tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        cifar10(n_train=0, directory=tmp_path)


def test_the_large_batch_comparison_builds_at_full_scale_on_cifar_like_data(mirror, tmp_path, monkeypatch):
    from genlib.core.train import train
    from genlib.experiments.sharpness import LargeBatchSetup
    from genlib.running.sweep import run_experiment

    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))  # the archive goes to $GENLIB_CACHE/data
    setups = LargeBatchSetup.at_scale("full", n_train=24, n_test=4).comparison()
    small, epochs, updates = setups.values()
    assert (small.batch_size, epochs.batch_size, updates.batch_size) == (128, 4096, 4096)
    assert epochs.steps == round(small.steps / 32) and updates.steps == small.steps
    data, model, config = epochs.build()
    history = train(model, data, replace(config, steps=2, eval_every=2), members=epochs.members())
    assert history["train_loss"].shape == (2, 3)
    run = run_experiment(replace(epochs, steps=2, eval_every=2), directory=tmp_path / "runs")  # the pipeline's way
    np.testing.assert_array_equal(run["train_loss"], history["train_loss"])
