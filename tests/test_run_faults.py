"""Faults and concurrency: kill -9 at random points then resume, SIGTERM, locks, leftovers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import graphforge
import graphforge.io as gio
from graphforge.cli.main import cli
from graphforge.engine.checkpoint import safe_load
from graphforge.errors import ConfigError, DataError

ARGS = ["--converter", "none", "--model", "mlp", "--limit-train", "200", "--limit-test", "40", "--no-plots",
        "-o", "hidden=32", "--batch-size", "16", "--patience", "0", "--threads", "1", "-q"]
EPOCHS = 6


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "graphforge", "run", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _history(run_dir) -> list[dict]:
    return json.loads((run_dir / "history.json").read_text())


def _kill_at_random(proc: subprocess.Popen, run_dir, delay: float) -> bool:
    """SIGKILL ``proc`` ``delay`` seconds after its run directory appears; whether it was killed."""
    deadline = time.time() + 300
    while proc.poll() is None and not (run_dir / "config.yaml").is_file() and time.time() < deadline:
        time.sleep(0.02)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        return True


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path):
    """Short runs killed with SIGKILL at random moments of their training (checkpoint writes
    included), each resumed until it completes: every file parses, the history has each epoch
    exactly once, and the final metrics equal those of a run that was never interrupted."""
    ref = graphforge.run("none", "mlp", epochs=EPOCHS, out=str(tmp_path / "ref"), plots=False, limit_train=200,
                         limit_test=40, options={"hidden": 32}, batch_size=16, patience=0, threads=1)
    rng = random.Random(7)
    kills = 0
    for trial in range(3):
        run_dir = tmp_path / f"killed{trial}"
        for attempt in range(8):
            resume = (run_dir / "config.yaml").is_file()
            cmd = _cli("--resume", str(run_dir), "-q") if resume else _cli(*ARGS, "--epochs", str(EPOCHS),
                                                                            "--out", str(run_dir))
            proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if attempt < 3:  # the first attempts die at a random moment, the last one may finish
                kills += _kill_at_random(proc, run_dir, rng.uniform(0.0, 1.5))
            else:
                proc.wait(timeout=300)
            status = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
            if proc.returncode == 0 and status.get("status") == "completed":
                break
        else:
            pytest.fail(f"trial {trial} never completed")
        for name in ("checkpoint.pt", "last.pt"):
            safe_load(run_dir / name)
        for name in ("metrics.json", "history.json", "run.json"):
            json.loads((run_dir / name).read_text())
        assert not list(run_dir.glob(".*.tmp"))
        hist = _history(run_dir)
        assert [row["epoch"] for row in hist] == list(range(1, EPOCHS + 1))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["test_accuracy"] == ref.metrics["test_accuracy"]
        assert metrics["val_accuracy"] == ref.metrics["val_accuracy"]
        assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in ref.history]
    assert kills >= 3  # the runs were really interrupted


def test_sigterm_records_interrupted_and_resume_keeps_started(tmp_path):
    run_dir = tmp_path / "term"
    proc = subprocess.Popen(_cli(*ARGS, "--epochs", "200", "--out", str(run_dir)), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "last.pt").is_file():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == 143
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGTERM"
    started = status["started"]
    result = graphforge.run(resume=run_dir, epochs=len(_history(run_dir)) + 1)
    status = json.loads((run_dir / "run.json").read_text())
    assert status["status"] == "completed" and status["started"] == started and len(status["resumed"]) == 1
    assert result.metrics["epochs"] == len(_history(run_dir))


_SIGTERM_WHILE_FAILING = """
import os, signal, sys
import graphforge
from graphforge.engine import tasks
from graphforge.engine.rundir import RunDirectory

def fail(self, optimizer, epoch):
    raise RuntimeError("a peer went away")  # as gloo reports a dead rank

write = RunDirectory.write_status

def write_status(self, status, **info):
    if status != "running":  # torchrun's SIGTERM (twice) lands while the failure is recorded
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    write(self, status, **info)

tasks.InductiveTask.train_epoch = fail
RunDirectory.write_status = write_status
try:
    graphforge.run("none", "mlp", epochs=2, limit_train=100, limit_test=40, out=sys.argv[1], plots=False)
except RuntimeError as exc:
    print("raised", exc)
"""


def test_a_sigterm_while_a_failure_is_recorded_waits_for_the_status(tmp_path):
    res = subprocess.run([sys.executable, "-c", _SIGTERM_WHILE_FAILING, str(tmp_path / "r")], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]  # not killed by the signals: they were held back
    assert "raised a peer went away" in res.stdout
    status = json.loads((tmp_path / "r" / "run.json").read_text())
    assert status["status"] == "failed" and "a peer went away" in status["error"]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_epoch_1(tmp_path):
    run = graphforge.run("none", "mlp", epochs=2, out=str(tmp_path / "early"), plots=False, limit_train=60)
    for name in ("last.pt", "checkpoint.pt", "history.json", "history.csv", "metrics.json"):
        (run.run_dir / name).unlink()
    status = json.loads((run.run_dir / "run.json").read_text())  # a killed run still says "running"
    (run.run_dir / "run.json").write_text(json.dumps({**status, "status": "running"}))
    resumed = graphforge.run(resume=run.run_dir)
    assert resumed.metrics["epochs"] == 2 and [h["epoch"] for h in resumed.history] == [1, 2]


def test_stale_temporaries_are_removed_when_a_run_is_opened(tmp_path):
    run = graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "tmpfiles"), plots=False, limit_train=60)
    stale = [run.run_dir / ".checkpoint.pt.abc123.tmp", run.run_dir / ".history.json.x.tmp",
             run.run_dir / "plots" / ".loss.png.y.tmp"]
    for f in stale:
        f.write_bytes(b"partial")
    graphforge.run(resume=run.run_dir, epochs=2)
    assert not any(f.exists() for f in stale)


def test_two_processes_cannot_resume_one_run(tmp_path):
    run = graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "locked"), plots=False, limit_train=60)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from graphforge.io import directory_lock\n"
        "with directory_lock(sys.argv[1], 'run directory'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"), str(run.run_dir)], stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"in use by another graphforge process \(pid {holder.pid}\)"):
            graphforge.run(resume=run.run_dir, epochs=2)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    # The holder was killed: its lock is gone with it, so the run resumes.
    assert graphforge.run(resume=run.run_dir, epochs=2).metrics["epochs"] == 2


def test_resume_on_a_read_only_run_directory_is_a_clear_error(tmp_path, monkeypatch):
    run = graphforge.run("none", "mlp", epochs=1, out=str(tmp_path / "ro"), plots=False, limit_train=60)
    real_write = type(run.run_dir).write_bytes

    def read_only(self, data):  # root ignores chmod; simulate EROFS for the writability probe
        if self.name == ".graphforge-write-test":
            raise OSError(30, "Read-only file system")
        return real_write(self, data)

    monkeypatch.setattr(type(run.run_dir), "write_bytes", read_only)
    before = (run.run_dir / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="cannot write to run directory .*Read-only file system"):
        graphforge.run(resume=run.run_dir, epochs=2)
    assert (run.run_dir / "last.pt").read_bytes() == before


def test_a_trained_run_without_last_pt_is_refused_not_retrained(tmp_path):
    run = graphforge.run("none", "mlp", epochs=2, out=str(tmp_path / "lost"), plots=False, limit_train=60)
    (run.run_dir / "last.pt").unlink()
    kept = {name: (run.run_dir / name).read_bytes() for name in ("checkpoint.pt", "metrics.json", "run.json")}
    with pytest.raises(DataError, match=r"last.pt is missing, but the run completed"):
        graphforge.run(resume=run.run_dir)
    status = json.loads(kept["run.json"])
    (run.run_dir / "run.json").write_text(json.dumps({**status, "status": "interrupted"}))
    kept["run.json"] = (run.run_dir / "run.json").read_bytes()
    with pytest.raises(DataError, match=r"the run has finished epochs \(history.json\)"):
        graphforge.run(resume=run.run_dir, epochs=3)
    assert {name: (run.run_dir / name).read_bytes() for name in kept} == kept


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("status_too", [False, True], ids=["last.pt", "last.pt-and-run.json"])
def test_a_full_disk_is_one_line_error_and_leaves_no_partial_file(tmp_path, monkeypatch, status_too):
    """From the first write of last.pt on, writes go to /dev/full (ENOSPC, as on a full disk);
    with ``status_too`` the failed status cannot be recorded either."""
    real_open = open
    full = []

    def filling_open(file, mode="r", *args, **kwargs):
        name = os.path.basename(os.fspath(file))
        if name.startswith(".last.pt."):
            full.append(name)
        if full and "w" in mode and (status_too or name.startswith(".last.pt.")):
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(gio, "open", filling_open, raising=False)
    out = tmp_path / "full"
    res = CliRunner().invoke(cli, ["run", "--epochs", "1", "--limit-train", "60", "--limit-test", "20", "--no-plots",
                                   "--out", str(out)])
    assert res.exit_code == 1 and not isinstance(res.exception, OSError), res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert errors == [f"Error: cannot write {out / 'last.pt'}: No space left on device"], res.output
    assert not (out / "last.pt").exists() and not list(out.glob(".*.tmp"))
    status = json.loads((out / "run.json").read_text())
    if status_too:  # best effort: the old status stays, with a warning, and no second traceback
        assert status["status"] == "running" and "run.json could not be updated" in res.output
    else:
        assert status["status"] == "failed" and "No space left on device" in status["error"]
