"""sweep() on a real cluster: Dask distributed with two worker processes (the `cluster` extra).

A sweep hands each point to the executor; every finished point is written to the shared cache at
once, atomically. So a point is computed once however many workers there are, and a sweep whose
worker dies loses only the points that had not finished: running it again computes just those.
"""
from pathlib import Path

import pytest

from genlib.running.sweep import is_cached, sweep

distributed = pytest.importorskip("distributed")  # pip install genlib-book[cluster]
from cluster_points import SquarePoint  # noqa: E402  (after the skip: needs nothing but genlib)

POINTS = 8


def computed(log: Path) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines()] if log.exists() else []


def pids(log: Path) -> set[str]:
    return {line.split()[1] for line in log.read_text().splitlines()}


def local_cluster():
    import dask

    # A task whose worker dies is not retried: the sweep stops, as when a cluster loses a node for good.
    # The workers import cluster_points from this folder, the same file as this process. (Uploading
    # it with Client.upload_file re-imports it here from a temporary copy, and the cache key, which
    # reads the experiment's source file, then depended on when that copy was read: a flaky test.)
    here = str(Path(__file__).parent)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env={"PYTHONPATH": here})
    return cluster, distributed.Client(cluster)


def test_every_point_is_computed_once_by_two_worker_processes(tmp_path):
    log = tmp_path / "log"
    points = [SquarePoint(x=x, log=str(log)) for x in range(POINTS)]
    cluster, client = local_cluster()
    try:
        results = sweep(points, executor=client.get_executor(), directory=tmp_path / "cache", progress=False)
    finally:
        client.close(), cluster.close()
    assert [float(r["value"][0, 0]) for r in results] == [x**2 for x in range(POINTS)]
    assert sorted(computed(log)) == list(range(POINTS))  # each point exactly once
    assert len(pids(log)) == 2  # and the work was shared by both processes
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == POINTS
    again = sweep(points, directory=tmp_path / "cache", progress=False)  # read back, nothing computed
    assert len(computed(log)) == POINTS and [float(r["value"][0, 0]) for r in again] == [x**2 for x in range(POINTS)]


def test_a_worker_killed_mid_sweep_loses_no_finished_point(tmp_path):
    log, cache = tmp_path / "log", tmp_path / "cache"
    points = [SquarePoint(x=x, log=str(log), crash_marker=str(tmp_path / "crashed") if x == 5 else "")
              for x in range(POINTS)]
    cluster, client = local_cluster()
    try:
        with pytest.raises(distributed.KilledWorker):
            sweep(points, executor=client.get_executor(), directory=cache, progress=False)
    finally:
        client.close(), cluster.close()  # nothing runs on after this: the cache is now fixed
    assert (tmp_path / "crashed").exists()
    finished = {p.x for p in points if is_cached(p, cache)}
    assert finished <= set(computed(log)) and 5 not in finished
    assert finished, "the worker died before any point finished: not mid-sweep"
    before = len(computed(log))

    cluster, client = local_cluster()
    try:
        results = sweep(points, executor=client.get_executor(), directory=cache, progress=False)
    finally:
        client.close(), cluster.close()
    rerun = computed(log)[before:]
    assert sorted(rerun) == sorted(set(range(POINTS)) - finished)  # only the missing points, once each
    assert [float(r["value"][0, 0]) for r in results] == [x**2 for x in range(POINTS)]
