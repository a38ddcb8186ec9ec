"""Checkpoints: one layout for every model family, loaded safely (no code runs on load)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import graphforge
from graphforge.cli.main import cli
from graphforge.engine.checkpoint import CHECKPOINT_FORMAT, read_checkpoint, safe_load
from graphforge.engine.runtime import rng_state, set_rng_state
from graphforge.errors import DataError

EVIL = textwrap.dedent("""
    import os, sys, torch
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + sys.argv[2],))
    obj = torch.load(sys.argv[1], weights_only=True)
    obj["state"]["evil"] = Evil()
    torch.save(obj, sys.argv[1])
""")


def _poison(path, marker):
    subprocess.run([sys.executable, "-c", EVIL, str(path), str(marker)], check=True, timeout=120)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    graphforge.run("none", "mlp", epochs=2, out=str(out), plots=False, limit_train=300)
    return out


def test_every_family_writes_the_same_layout(mlp_run, tmp_path):
    knn = graphforge.run("none", "knn", out=str(tmp_path / "knn"), plots=False, limit_train=200, options={"k": 3})
    lp = graphforge.run("similarity", "label_prop", out=str(tmp_path / "lp"), plots=False, limit_train=200)
    for run_dir, family in ((mlp_run, "gradient"), (knn.run_dir, "fit"), (lp.run_dir, "graph_fit")):
        ckpt = safe_load(run_dir / "checkpoint.pt")
        assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["family"] == family
        assert {"config", "spec", "out_spec", "num_classes", "class_names"} <= set(ckpt["meta"])
        assert isinstance(ckpt["state"], dict)
    last = safe_load(mlp_run / "last.pt")
    assert {"optimizer", "scheduler", "state", "rng"} <= set(last["training"])


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(mlp_run, tmp_path):
    import shutil

    run = tmp_path / "received"
    shutil.copytree(mlp_run, run)
    marker = tmp_path / "PWNED"
    for name in ("checkpoint.pt", "last.pt"):
        _poison(run / name, marker)
    with pytest.raises(DataError, match=r"refusing to load .*checkpoint.pt: it holds a Python object \(posix.system\)"):
        graphforge.load_run(run)
    result = CliRunner().invoke(cli, ["run", "--resume", str(run), "--epochs", "3"])
    assert result.exit_code == 1 and "refusing to load" in result.output and "last.pt" in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()


def test_corrupt_and_foreign_checkpoints_are_one_line_errors(mlp_run, tmp_path):
    bad = tmp_path / "truncated.pt"
    bad.write_bytes((mlp_run / "checkpoint.pt").read_bytes()[:100])
    with pytest.raises(DataError, match="cannot read .*truncated.pt"):
        safe_load(bad)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(DataError, match="not a graphforge checkpoint"):
        read_checkpoint(safe_load(tmp_path / "list.pt"), tmp_path / "list.pt")
    with pytest.raises(DataError, match="checkpoint format 99"):
        read_checkpoint({"format": 99}, "x.pt")


def test_checkpoints_of_the_previous_layout_still_load(mlp_run, tmp_path):
    """Format 1 (graphforge 0.1): weights next to the meta keys, RNG state pickled with numpy arrays."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(mlp_run, old)
    new = safe_load(old / "checkpoint.pt")
    torch.save({"net": new["state"]["net"], "epoch": new["epoch"], **new["meta"]}, old / "checkpoint.pt")
    last = safe_load(old / "last.pt")
    training = last["training"]
    legacy_rng = {"python": __import__("random").getstate(), "numpy": np.random.get_state(),
                  "torch": training["rng"]["torch"]}
    torch.save({"net": last["state"]["net"], "optimizer": training["optimizer"], "scheduler": training["scheduler"],
                "state": training["state"], "rng": legacy_rng, "generator": training["generator"],
                "meta": last["meta"]}, old / "last.pt")
    data = graphforge.get_dataset("digits").load(root=None, download=False, seed=0)
    trained = graphforge.load_run(old)
    assert trained.predict(data.test.x).shape == (len(data.test),)
    resumed = graphforge.run(resume=old, epochs=3)
    assert resumed.metrics["epochs"] == 3


def test_rng_state_round_trips_through_a_safe_file(tmp_path):
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    a = (__import__("random").random(), np.random.rand(), torch.rand(1))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    b = (__import__("random").random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


def test_no_module_loads_checkpoints_unsafely():
    root = os.path.join(os.path.dirname(graphforge.__file__))
    offenders = []
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if "weights_only=False" in text or "allow_pickle=True" in text:
                    offenders.append(name)
    assert not offenders


def test_a_run_loads_and_resumes_as_trained_after_a_default_changes(tmp_path, monkeypatch):
    """The checkpoint records every option the plugins were built with, defaults included."""
    from graphforge.builtin.models.cnn import CNN

    run = tmp_path / "cnn"
    graphforge.run(model="cnn", epochs=1, limit_train=120, limit_test=40, seed=0, out=run, plots=False,
                   options={"channels": [4, 8]})
    meta = read_checkpoint(safe_load(run / "checkpoint.pt"), run / "checkpoint.pt")["meta"]
    assert meta["built_options"]["model"] == {"channels": [4, 8], "kernel_size": 3, "dropout": 0.25,
                                               "convs_per_block": 2, "stage_k": 0}
    x = torch.rand(5, 1, 8, 8)
    before = graphforge.load_run(run).predict_proba(x)
    # A later version with other defaults (one convolution per block, a wider kernel):
    monkeypatch.setattr(CNN.__init__, "__defaults__", ((32, 64, 128), 5, 0.25, 1, 0))
    assert CNN().convs_per_block == 1
    loaded = graphforge.load_run(run)
    assert loaded.model.convs_per_block == 2 and loaded.model.kernel_size == 3
    assert np.allclose(loaded.predict_proba(x), before)
    resumed = graphforge.run(resume=run, epochs=2)
    assert resumed.metrics["epochs"] == 2


@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_resume_from_an_empty_or_truncated_last_pt_is_one_short_line(mlp_run, tmp_path, cut):
    import shutil

    run = tmp_path / cut
    shutil.copytree(mlp_run, run)
    data = (run / "last.pt").read_bytes()
    (run / "last.pt").write_bytes(b"" if cut == "empty" else data[: len(data) // 2])
    result = CliRunner().invoke(cli, ["run", "--resume", str(run), "--epochs", "3"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"Error: cannot read {run / 'last.pt'}: not a complete checkpoint (truncated or empty)"]


def test_an_unreadable_checkpoint_names_the_exception_and_its_first_sentence(mlp_run, monkeypatch):
    def damaged(*args, **kwargs):
        raise RuntimeError("PytorchStreamReader failed reading file data/0: invalid header or archive is corrupted. "
                           "This is an internal miniz error. If you are seeing this error, ...\nmore advice")

    monkeypatch.setattr(torch, "load", damaged)
    with pytest.raises(DataError) as caught:
        safe_load(mlp_run / "checkpoint.pt")
    assert str(caught.value) == (f"cannot read {mlp_run / 'checkpoint.pt'}: it is damaged or not a torch file "
                                 "(RuntimeError: PytorchStreamReader failed reading file data/0: invalid header or "
                                 "archive is corrupted)")
