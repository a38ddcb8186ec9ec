"""Data-parallel training under torchrun (gloo, 2 processes on localhost): one run directory,
one JSON line, global metrics, exact single-process equality at world size 1, resume after a
rank dies, and one-line errors for bad launches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import graphforge

ARGS = ["--converter", "dyn_knn", "--model", "sage", "--limit-train", "400", "--limit-test", "60", "--no-plots"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "GRAPHFORGE_DIST_TIMEOUT": "60", **extra}


def _rank_of(pid: int) -> str | None:
    """The ``RANK`` in a process's environment (``None`` if unreadable or unset)."""
    try:
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    return next((v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"RANK=")), None)


def _torchrun(nproc: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "graphforge", "run", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)


def test_two_processes_one_run_directory_one_json_line(tmp_path):
    out = tmp_path / "ddp"
    res = _torchrun(2, *ARGS, "--epochs", "6", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout
    metrics = json.loads(lines[0])
    assert metrics == json.loads((out / "metrics.json").read_text())
    resolved = json.loads((out / "resolved.json").read_text())
    assert resolved["environment"]["world_size"] == 2 and resolved["environment"]["backend"] == "gloo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]  # no second directory from rank 1
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert sum(history[-1]["k_hist"].values()) == 400  # the k histogram counts every rank's images
    single = graphforge.run("dyn_knn", "sage", epochs=6, out=str(tmp_path / "one"), plots=False, limit_train=400,
                            limit_test=60)
    assert abs(metrics["test_accuracy"] - single.metrics["test_accuracy"]) < 0.15  # in line; not equal (2x batch)


def test_two_processes_train_in_bf16(tmp_path):
    """--precision bf16 under DistributedDataParallel: autocast around the wrapped forward."""
    out = tmp_path / "bf16"
    res = _torchrun(2, *ARGS, "--epochs", "4", "--precision", "bf16", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads(res.stdout)
    assert metrics["precision"] == "bf16" and metrics["test_accuracy"] >= 0.8
    assert json.loads((out / "resolved.json").read_text())["environment"]["world_size"] == 2


def test_world_size_one_under_torchrun_equals_a_plain_run(tmp_path):
    res = _torchrun(1, *ARGS, "--epochs", "2", "--out", str(tmp_path / "tr"), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    plain = subprocess.run([sys.executable, "-m", "graphforge", "run", *ARGS, "--epochs", "2", "--out",
                            str(tmp_path / "plain"), "--json"], env=_env(), capture_output=True, text=True,
                           timeout=300, check=True)
    a, b = json.loads(res.stdout), json.loads(plain.stdout)
    for key in ("test_accuracy", "val_accuracy", "train_accuracy", "test_mean_k"):
        assert a[key] == b[key], key
    ha = json.loads((tmp_path / "tr" / "history.json").read_text())
    hb = json.loads((tmp_path / "plain" / "history.json").read_text())
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_a_dying_rank_is_an_error_and_the_run_resumes(tmp_path):
    out = tmp_path / "dies"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "graphforge",
           "run", *ARGS, "--epochs", "40", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (out / "last.pt").is_file():
            time.sleep(0.2)
        assert (out / "last.pt").is_file(), "the run never wrote its first checkpoint"
        workers = subprocess.run(["pgrep", "-f", "-P", str(proc.pid), "graphforge"], capture_output=True, text=True)
        pids = [int(p) for p in workers.stdout.split()]
        assert len(pids) == 2
        # Rank 1 dies mid-run (found by its RANK, not by pid order, which need not follow the
        # ranks): rank 0, which owns the run directory, must then mark the run as ended.
        os.kill(next(p for p in pids if _rank_of(p) == "1"), signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    status = json.loads((out / "run.json").read_text())
    assert status["status"] in ("failed", "interrupted")
    done = len(json.loads((out / "history.json").read_text()))
    res = _torchrun(2, "--resume", str(out), "--epochs", str(done + 1), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, done + 2))
    assert json.loads((out / "run.json").read_text())["status"] == "completed"


def test_bad_launches_are_one_line_errors(tmp_path):
    res = subprocess.run([sys.executable, "-m", "graphforge", "run", *ARGS, "--epochs", "1", "--out",
                          str(tmp_path / "bad")], env=_env(RANK="0", WORLD_SIZE="2"), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1 and "MASTER_ADDR, MASTER_PORT are not set" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "bad").exists()
    res = subprocess.run([sys.executable, "-m", "graphforge", "run", "--epochs", "1"],
                         env=_env(RANK="3", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29999"),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "RANK=3 is not a rank of WORLD_SIZE=2" in res.stderr


def test_fit_models_and_full_batch_graphs_say_to_run_in_one_process(tmp_path):
    res = _torchrun(2, "--converter", "none", "--model", "knn", "--out", str(tmp_path / "knn"))
    assert res.returncode != 0 and "run it without torchrun" in res.stderr
    res = _torchrun(2, "--converter", "similarity", "--model", "gcn", "--out", str(tmp_path / "gcn"))
    assert res.returncode != 0 and "num_neighbors" in res.stderr


@pytest.mark.slow
def test_neighbour_sampled_graph_training_across_ranks(tmp_path):
    res = _torchrun(2, "--converter", "similarity", "--model", "sage", "-o", "num_neighbors=[5,5,5]",
                    "--epochs", "3", "--out", str(tmp_path / "sampled"), "--json")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout)["test_accuracy"] > 0.5


def _nproc(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphforge", "run", "--nproc", "2", *args], env=_env(), cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_nproc_checks_the_run_before_launching(tmp_path):
    cases = [(["--model", "mlpp"], "unknown model 'mlpp'"), (["-o", "bogus=1"], "takes option 'bogus'")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available"))
    for args, message in cases:
        res = _nproc(*args, "--epochs", "1", "--limit-train", "60", "--out", str(tmp_path / "n"))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], \
            res.stderr[-3000:]
        assert not (tmp_path / "n").exists()


def test_nproc_reports_a_failed_rank_in_one_line(tmp_path):
    res = _nproc("--model", "knn", "--limit-train", "60", "--out", str(tmp_path / "knn"))
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr and "ChildFailedError" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: torchrun: rank ") and "exited with status 1" in last, res.stderr[-3000:]
    assert "run it without torchrun" in res.stderr  # the rank's own error comes first
