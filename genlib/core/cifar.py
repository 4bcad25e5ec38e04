"""CIFAR-10 (Krizhevsky 2009), downloaded once into genlib's cache; only full-scale runs use it.

Quick scale, the tests and CI never download anything (they use scikit-learn's bundled digits).
The archive, the "python version" (163 MB, 50,000 training and 10,000 test images of 32x32x3
pixels), is fetched from :data:`CIFAR10_URL` into ``$GENLIB_CACHE/data``, checked against its MD5
and read with pickle. ``$GENLIB_CIFAR10_URL`` (with ``$GENLIB_CIFAR10_MD5``) points elsewhere, for
a local mirror or a copy on disk (``file://...``). Without a network, :class:`DownloadError` says
where to put the archive by hand. Sharpness chapter (the large-batch gap on real images).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ._validate import check_int, check_seeds
from .data import TaskData
from .environment import cache_dir, show_progress

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000


class DownloadError(RuntimeError):
    """A data set that a full-scale run needs could not be downloaded."""


def cifar10_archive(directory: str | Path | None = None) -> Path:
    """The path of the verified archive in ``directory`` (default ``$GENLIB_CACHE/data``),
    downloaded first if it is not there."""
    url = os.environ.get("GENLIB_CIFAR10_URL", CIFAR10_URL)
    md5 = os.environ.get("GENLIB_CIFAR10_MD5", CIFAR10_MD5)
    path = Path(directory or cache_dir() / "data") / ARCHIVE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=size, unit="B", unit_scale=True, desc="CIFAR-10", disable=not show_progress()) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as error:  # URLError, timeouts, refused connections are all OSErrors
            partial.unlink(missing_ok=True)
            raise DownloadError(f"CIFAR-10 could not be downloaded from {url} ({error}). With no network, copy "
                                f"{ARCHIVE} (from {CIFAR10_URL}) to {path}, or set GENLIB_CIFAR10_URL to a "
                                f"copy (file:///...)") from error
        os.replace(partial, path)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != md5:
        raise DownloadError(f"{path} is not the CIFAR-10 archive (MD5 {digest}, expected {md5}): delete it and "
                            "run again")
    return path


def load_cifar10(directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train pixels (50000, 3, 32, 32) uint8, train labels (50000,), test pixels, test labels)."""
    parts: dict[str, list] = {"train": [], "test": []}
    with tarfile.open(cifar10_archive(directory)) as archive:
        for member in sorted(archive.getmembers(), key=lambda m: m.name):
            name = Path(member.name).name
            if name.startswith("data_batch_") or name == "test_batch":
                batch = pickle.load(archive.extractfile(member), encoding="bytes")
                parts["test" if name == "test_batch" else "train"].append(batch)
    if not parts["train"] or not parts["test"]:
        raise DownloadError("the CIFAR-10 archive holds no data_batch_* or test_batch files")

    def stack(batches: list) -> tuple[np.ndarray, np.ndarray]:
        pixels = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
        return pixels, np.concatenate([np.asarray(b[b"labels"]) for b in batches])

    return (*stack(parts["train"]), *stack(parts["test"]))


def cifar10(
    n_train: int = TRAIN_IMAGES,
    n_test: int = TEST_IMAGES,
    seeds: list[int] | tuple[int, ...] = (0,),
    directory: str | Path | None = None,
) -> TaskData:
    """CIFAR-10 as flat vectors (3,072 numbers, each channel standardized over the training images),
    10 classes: the first ``n_train`` training images of one fixed shuffle, the same for every member
    (members differ by their initial weights), and the first ``n_test`` test images."""
    check_int("n_train", n_train, low=1, high=TRAIN_IMAGES)
    check_int("n_test", n_test, low=1, high=TEST_IMAGES)
    members = len(check_seeds(seeds))
    train_x, train_y, test_x, test_y = load_cifar10(directory)
    chosen = np.random.default_rng(2009).permutation(len(train_x))[:n_train]
    x = np.concatenate([train_x[chosen], test_x[:n_test]]).astype(np.float32) / 255
    mean = x[:n_train].mean((0, 2, 3), keepdims=True)
    std = x[:n_train].std((0, 2, 3), keepdims=True)
    x = ((x - mean) / std).reshape(len(x), -1)
    y = torch.from_numpy(np.concatenate([train_y[chosen], test_y[:n_test]])).long()
    idx = torch.arange(n_train + n_test)
    return TaskData(x=torch.from_numpy(x), y=y.expand(members, -1).clone(),
                    train_idx=idx[:n_train].expand(members, -1).clone(),
                    test_idx=idx[n_train:].expand(members, -1).clone(), num_classes=10,
                    description=f"CIFAR-10, {n_train} training images")

