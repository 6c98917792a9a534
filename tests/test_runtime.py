"""Joining or starting Ray (`init_ray`): a `ray start` cluster on the machine is joined, as `ray.init()` would; a local
cluster's workers run the setup hook that keeps Ray Train's placement-group cleaner from warning once a second (no
dashboard, so no State API for it to ask), and nothing else is silenced."""

import logging
import time

import pytest

from padirec.runtime import PLACEMENT_GROUP_CLEANER_LOGGER, init_ray


@pytest.fixture
def local_cluster(monkeypatch):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", "local")  # a private cluster, even beside one left by `ray start`
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


class FakeInit:
    """`ray.init` as a `ray start` cluster on this machine answers it: a size for a new cluster is refused."""

    def __init__(self, error: str):
        self.error, self.calls = error, []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if "num_cpus" in kwargs:
            raise ValueError(self.error)


@pytest.mark.parametrize("address", [None, "local"])
def test_init_ray_joins_a_ray_start_cluster_and_says_so(monkeypatch, capsys, address):
    import ray

    fake = FakeInit("When connecting to an existing cluster, num_cpus and num_gpus must not be provided.")
    monkeypatch.setattr(ray, "init", fake)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    init_ray(progress=False)
    assert fake.calls[0]["num_cpus"] >= 4 and "worker_process_setup_hook" in fake.calls[0]["runtime_env"]
    assert fake.calls[1] == {"log_to_driver": False}  # joined as it is sized
    assert "joining the cluster started on this machine with `ray start`" in capsys.readouterr().err


def test_init_ray_passes_other_errors_and_joins_ray_address_directly(monkeypatch):
    import ray

    fake = FakeInit("something else")
    monkeypatch.setattr(ray, "init", fake)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="something else"):
        init_ray()
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    fake.calls.clear()
    init_ray(progress=True)
    assert fake.calls == [{"log_to_driver": True}]
