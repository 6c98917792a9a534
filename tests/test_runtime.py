"""The local cluster `init_ray` starts: its workers run the setup hook that keeps Ray Train's placement-group
cleaner from warning once a second (no dashboard, so no State API for it to ask), and nothing else is silenced."""

import logging
import time

import pytest

from padirec.runtime import PLACEMENT_GROUP_CLEANER_LOGGER, init_ray


@pytest.fixture
def local_cluster(monkeypatch):
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init_ray(progress=True)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_local_workers_silence_the_placement_group_cleaner_only(local_cluster, capfd):
    ray = local_cluster

    @ray.remote(num_cpus=0)
    class Warner:  # detached, like the cleaner Ray Train launches
        def warn(self) -> int:
            logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).warning("cleaner-noise")
            logging.getLogger("ray.train.other").warning("other-warning")
            return logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).getEffectiveLevel()

    warner = Warner.options(lifetime="detached", name="warner").remote()
    assert ray.get(warner.warn.remote()) == logging.ERROR
    deadline = time.time() + 30  # worker lines reach the driver through Ray's log monitor
    seen = ""
    while "other-warning" not in seen and time.time() < deadline:
        time.sleep(0.5)
        captured = capfd.readouterr()
        seen += captured.out + captured.err
    ray.kill(warner)
    assert "other-warning" in seen  # the driver does show workers' warnings
    assert "cleaner-noise" not in seen
