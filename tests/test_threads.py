"""The thread policy: CPU limits, the load of other processes, overrides."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from graphforge.engine import threads as th


@pytest.fixture(autouse=True)
def _keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(th, "_LAST_SET", None)
    monkeypatch.delenv("GRAPHFORGE_ADAPT_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert th._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert th._cgroup_quota(tmp_path) is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert th._cgroup_quota(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    assert th._cgroup_quota(tmp_path) is None
    assert th._cgroup_quota(tmp_path / "missing") is None


def test_available_cpus_takes_the_quota(monkeypatch) -> None:
    monkeypatch.setattr(th, "_cgroup_quota", lambda: 1.5)
    assert th.available_cpus() == 1
    monkeypatch.setattr(th, "_cgroup_quota", lambda: 0.2)
    assert th.available_cpus() == 1
    monkeypatch.setattr(th, "_cgroup_quota", lambda: None)
    assert th.available_cpus() == len(os.sched_getaffinity(0))


def test_procs_running_and_own_threads_parse(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  1 2 3\nprocs_running 7\nprocs_blocked 0\n")
    assert th._procs_running(tmp_path / "stat") == 7
    assert th._procs_running(tmp_path / "missing") is None
    tasks = tmp_path / "task"
    for tid, state in ((1, "R"), (2, "S"), (3, "R")):
        (tasks / str(tid)).mkdir(parents=True)
        # a command name with spaces and parentheses must not confuse the parser
        (tasks / str(tid) / "stat").write_text(f"{tid} (py (x) R) {state} 1 2 3\n")
    assert th._own_running(tasks) == 2


def test_busy_elsewhere_scales_to_this_process_share(monkeypatch) -> None:
    monkeypatch.setattr(th, "_procs_running", lambda: 33)
    monkeypatch.setattr(th, "_own_running", lambda: 1)
    monkeypatch.setattr(th.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(th, "available_cpus", lambda: 2)
    assert th.busy_elsewhere(samples=1) == 1  # 32 busy tasks spread over 64 CPUs: one on our 2
    monkeypatch.setattr(th, "_procs_running", lambda: None)
    assert th.busy_elsewhere(samples=1) == 0  # no /proc: assume idle


def test_policy_leaves_busy_cpus_and_comes_back(monkeypatch) -> None:
    monkeypatch.setattr(th, "available_cpus", lambda: 4)
    torch.set_num_threads(4)
    busy = {"n": 0}
    monkeypatch.setattr(th, "busy_elsewhere", lambda **_: busy["n"])
    policy = th.ThreadPolicy()
    assert policy.apply() == 4
    busy["n"] = 3
    assert policy.apply() == 1 and torch.get_num_threads() == 1
    busy["n"] = 9
    assert policy.apply() == 1  # never below one
    busy["n"] = 1
    assert policy.apply() == 3
    # a later run in the same process starts from the ceiling, not from the lowered count
    busy["n"] = 0
    assert th.ThreadPolicy().apply() == 4


def test_explicit_count_and_env_switch_turn_adaptation_off(monkeypatch) -> None:
    monkeypatch.setattr(th, "available_cpus", lambda: 4)
    monkeypatch.setattr(th, "busy_elsewhere", lambda **_: 3)
    torch.set_num_threads(4)
    assert th.ThreadPolicy(2).apply() == 2
    assert th.ThreadPolicy(3).apply() == 3
    monkeypatch.setenv("GRAPHFORGE_ADAPT_THREADS", "0")
    torch.set_num_threads(4)
    assert th.ThreadPolicy().apply() == 4


def test_user_lowered_count_is_the_ceiling(monkeypatch) -> None:
    monkeypatch.setattr(th, "available_cpus", lambda: 4)
    monkeypatch.setattr(th, "busy_elsewhere", lambda **_: 0)
    torch.set_num_threads(2)  # as OMP_NUM_THREADS=2 would
    assert th.ThreadPolicy().apply() == 2


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="needs Linux /proc")
def test_a_busy_neighbour_is_counted(monkeypatch) -> None:
    monkeypatch.setattr(th, "available_cpus", lambda: os.cpu_count() or 1)  # share 1: count every task
    before = th.busy_elsewhere()
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        during = th.busy_elsewhere(samples=5)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert during >= 1
    assert during >= before or before > 1  # other jobs on a shared machine may come and go
