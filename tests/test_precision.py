"""``--precision bf16``: mixed-precision training and evaluation (autocast, fp32 weights and loss)."""

import logging
import warnings

import pytest
import torch
from click.testing import CliRunner

import graphforge
from graphforge.cli.main import cli, load_plugin_commands
from graphforge.config import RunConfig
from graphforge.engine import precision as engine_precision
from graphforge.engine.precision import autocast, check_precision, has_native_bf16, prepare_precision
from graphforge.errors import ConfigError
from graphforge.machine import ONEDNN_ISA_VARIABLES, onednn_isa_cap
from tests.helpers import interrupted_at

CPU = torch.device("cpu")
RUN = dict(epochs=3, limit_train=300, limit_test=60, plots=False, patience=0)


class _DtypeSpy:
    """Records the dtype of every ``torch.nn.Linear`` output while installed."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.seen: set[torch.dtype] = set()
        self.handles = [m.register_forward_hook(self._hook) for m in net.modules() if isinstance(m, torch.nn.Linear)]

    def _hook(self, module, inputs, output):
        self.seen.add(output.dtype)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def test_check_precision_and_config():
    assert check_precision("fp32") == "fp32" and check_precision("bf16") == "bf16"
    for bad in ("fp16", "bfloat16", None, 16):
        with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
            check_precision(bad)
    with pytest.raises(ConfigError, match="precision"):
        RunConfig(precision="fp16").validate()
    RunConfig(precision="bf16").validate()


def test_autocast_context():
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("fp32", CPU):
        assert layer(x).dtype == torch.float32
    with autocast("bf16", CPU):
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32


def test_bf16_on_a_cpu_without_bf16_warns(monkeypatch):
    for name in ONEDNN_ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(engine_precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert not has_native_bf16(CPU)
    with pytest.warns(UserWarning, match="no native bf16 instructions"):
        prepare_precision("bf16", CPU)
    monkeypatch.setattr(engine_precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert has_native_bf16(CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_precision("bf16", CPU)
        prepare_precision("fp32", CPU)


@pytest.mark.parametrize("variable,cap,native", [
    ("ONEDNN_MAX_CPU_ISA", "AVX2", False),  # oneDNN held to the instructions of an AVX2-only CPU
    ("ONEDNN_MAX_CPU_ISA", "avx512_core", False),  # plain AVX-512: bf16 emulated
    ("ONEDNN_MAX_CPU_ISA", "AVX2_VNNI_2", False),  # bf16 conversions only, no dot products
    ("DNNL_MAX_CPU_ISA", "AVX2", False),  # oneDNN's older name
    ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16", True),
    ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx", True),
    ("ONEDNN_MAX_CPU_ISA", "AVX10_1_512", True),
    ("ONEDNN_MAX_CPU_ISA", "ALL", True),  # no cap
    ("ONEDNN_MAX_CPU_ISA", "", True),
])
def test_a_onednn_isa_cap_below_bf16_is_not_native(monkeypatch, variable, cap, native):
    """ONEDNN_MAX_CPU_ISA caps the convolutions' instructions: bf16 is then emulated on a BF16 CPU too."""
    for name in ONEDNN_ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, cap)
    monkeypatch.setattr(engine_precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert onednn_isa_cap() == (cap.upper() if cap and cap != "ALL" else None)
    assert has_native_bf16(CPU) is native
    if native:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            prepare_precision("bf16", CPU)
    else:
        with pytest.warns(UserWarning, match=rf"oneDNN is capped at {cap.upper()} \({variable}\).*use --precision fp32"):
            prepare_precision("bf16", CPU)


def test_the_machine_header_names_a_onednn_cap(monkeypatch):
    from graphforge.bench.results import machine_header

    for name in ONEDNN_ISA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert "oneDNN" not in machine_header()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert "oneDNN capped at AVX2 by ONEDNN_MAX_CPU_ISA" in machine_header()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core")  # oneDNN's older name is named as it was set
    assert "oneDNN capped at AVX512_CORE by DNNL_MAX_CPU_ISA" in machine_header()


def test_bf16_on_an_old_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(ConfigError, match="compute capability 8.0 or newer; Tesla T4 is 7.5"):
        prepare_precision("bf16", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    prepare_precision("bf16", torch.device("cuda"))


@pytest.mark.parametrize("converter,model,options,extra", [
    ("none", "mlp", {"hidden": 32}, {"lr": 1e-2}),  # the default lr is slow for 3 epochs
    ("none", "cnn", {}, {"epochs": 6}),  # BatchNorm's running statistics need a few epochs on 300 images
    ("dyn_knn", "sage", {"hidden": 32, "layers": 2}, {"epochs": 6}),
])
def test_bf16_run_trains_in_bf16_with_fp32_weights(tmp_path, monkeypatch, converter, model, options, extra):
    """Every Linear computes in bf16 (fp32 without the flag); weights stay fp32; accuracy holds."""
    from graphforge.engine import tasks as engine_tasks

    spies: list[_DtypeSpy] = []
    original = engine_tasks.InductiveTask.__init__

    def spy_init(self, net, *args, **kwargs):
        original(self, net, *args, **kwargs)
        spies.append(_DtypeSpy(net))

    monkeypatch.setattr(engine_tasks.InductiveTask, "__init__", spy_init)
    warnings.simplefilter("ignore", UserWarning)  # a CI CPU may lack avx512_bf16: slower, not wrong
    settings = dict(RUN, **extra)
    bf16 = graphforge.run(converter, model, options=options, precision="bf16", out=str(tmp_path / "bf16"), **settings)
    assert spies[-1].seen == {torch.bfloat16}  # every Linear ran in bf16
    fp32 = graphforge.run(converter, model, options=options, out=str(tmp_path / "fp32"), **settings)
    assert spies[-1].seen == {torch.float32}
    assert bf16.metrics["precision"] == "bf16" and fp32.metrics["precision"] == "fp32"
    assert bf16.metrics["test_accuracy"] >= 0.85, bf16.metrics["test_accuracy"]
    assert abs(bf16.metrics["test_accuracy"] - fp32.metrics["test_accuracy"]) <= 0.1
    assert [h["train_loss"] for h in bf16.history] != [h["train_loss"] for h in fp32.history]
    state = torch.load(tmp_path / "bf16" / "checkpoint.pt", weights_only=True)
    floats = [t for t in state["state"]["net"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 for t in floats)
    loaded = graphforge.load_run(tmp_path / "bf16")
    assert loaded.config.precision == "bf16"


def test_bf16_with_a_held_out_k_head(tmp_path):
    warnings.simplefilter("ignore", UserWarning)
    r = graphforge.run("dyn_knn", "sage", options={"hidden": 32, "layers": 2, "k_holdout": 0.2}, precision="bf16",
                       out=str(tmp_path / "h"), **dict(RUN, epochs=6))
    assert r.metrics["test_accuracy"] >= 0.85


@pytest.mark.parametrize("options", [{"num_neighbors": "full"}, {"num_neighbors": [5, 5]}])
def test_bf16_on_a_dataset_graph(tmp_path, caplog, options):
    """Full-batch and neighbour-sampled training on one graph over the dataset."""
    warnings.simplefilter("ignore", UserWarning)
    with caplog.at_level(logging.INFO, logger="graphforge"):
            r = graphforge.run("similarity", "sage", options={"metric": "cosine", "threshold": 0.8, "cache": False,
                                                          "layers": 2, **options},
                           precision="bf16", out=str(tmp_path / "g"), epochs=20, limit_train=300, limit_test=60,
                           plots=False)
    sampled = "neighbour-sampled training" in caplog.text
    assert sampled == (options["num_neighbors"] != "full")
    assert r.metrics["precision"] == "bf16" and r.metrics["test_accuracy"] >= 0.8


def test_bf16_run_resumes_exactly(tmp_path, monkeypatch):
    from graphforge.engine import tasks as engine_tasks

    warnings.simplefilter("ignore", UserWarning)
    settings = dict(RUN, precision="bf16", options={"hidden": 16}, seed=1)
    straight = graphforge.run("none", "mlp", out=str(tmp_path / "a"), **settings)
    with interrupted_at(monkeypatch, engine_tasks.InductiveTask, 2), pytest.raises(KeyboardInterrupt):
        graphforge.run("none", "mlp", out=str(tmp_path / "b"), **settings)
    resumed = graphforge.run(resume=tmp_path / "b")
    assert resumed.metrics["precision"] == "bf16"
    assert [round(h["train_loss"], 6) for h in resumed.history] == [round(h["train_loss"], 6) for h in straight.history]


def test_cli_precision(tmp_path):
    runner = CliRunner()
    bad = runner.invoke(cli, ["run", "--precision", "fp16", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in bad.output
    assert not (tmp_path / "x").exists()
    ok = runner.invoke(cli, ["run", "--precision", "bf16", "--epochs", "2", "--limit-train", "200", "--no-plots",
                             "--json", "-q", "--out", str(tmp_path / "y")])
    assert ok.exit_code == 0, ok.output
    assert '"precision": "bf16"' in ok.output


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_on_the_gpu(tmp_path):
    r = graphforge.run("dyn_knn", "sage", device="cuda", precision="bf16", out=str(tmp_path / "g"), **RUN)
    assert r.metrics["precision"] == "bf16" and r.metrics["test_accuracy"] >= 0.9


def test_bench_precision_measures_both_precisions():
    from graphforge.bench.precision import format_table, run_precision_benchmark

    results = run_precision_benchmark(converter="dyn_knn", model="sage", image_size=8, batch_size=8, steps=2, warmup=1,
                                      model_options={"hidden": 16, "layers": 1})
    assert [r.precision for r in results] == ["fp32", "bf16"]
    assert all(r.train_images_per_s > 0 and r.infer_images_per_s > 0 for r in results)
    table = format_table(results, "title")
    assert table.splitlines()[0] == "title" and "fp32" in table and "bf16" in table
    assert "    1.00     1.00" in table.splitlines()[2]  # fp32 against itself
    with pytest.raises(ConfigError, match="precision must be one of"):
        run_precision_benchmark(precisions=("fp16",), steps=1, warmup=0)


@pytest.mark.parametrize("args,message", [
    (["--model", "knn"], "model 'knn' has no network to train"),
    (["--converter", "similarity", "--model", "gcn"], "converter 'similarity' builds one graph over the whole dataset"),
    (["--model", "dgcnn"], "model 'dgcnn' takes ['graphs'] input, but gets images"),
    (["--model", "nope"], "unknown model 'nope'"),
])
def test_bench_precision_refuses_what_has_no_network(args, message):
    load_plugin_commands()
    result = CliRunner().invoke(cli, ["bench", "precision", *args, "--steps", "1", "--warmup", "0"])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_bench_precision_cli_prints_the_table():
    load_plugin_commands()
    result = CliRunner().invoke(cli, ["bench", "precision", "--image-size", "8", "--batch-size", "8", "--steps", "2",
                                      "--warmup", "1", "-o", "channels=[8,16]"])
    assert result.exit_code == 0, result.output
    assert "none + cnn, 1x8x8 images, batch 8, median of 2 steps. Machine:" in result.output
    assert "x = speed-up over fp32 in the same run; native bf16: cpu" in result.output


def test_cli_choices_are_the_engine_precisions():
    """The CLI spells the choices out (it starts without importing torch); they must stay the engine's."""
    from graphforge.builtin.commands.bench import bench_results
    from graphforge.cli.main import run
    from graphforge.engine.precision import PRECISIONS

    for command in (run, bench_results):
        option = next(p for p in command.params if p.name == "precision")
        assert tuple(option.type.choices) == PRECISIONS


def test_bf16_on_a_fitted_model_warns_and_records_no_precision(tmp_path):
    with pytest.warns(UserWarning, match="--precision bf16 has no effect on 'knn'"):
        result = graphforge.run("none", "knn", precision="bf16", out=str(tmp_path / "knn"), plots=False,
                                options={"k": 3})
    assert result.metrics["precision"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # fp32 (the default) says nothing
        assert graphforge.run("none", "knn", out=str(tmp_path / "fp32"), plots=False,
                              options={"k": 3}).metrics["precision"] is None
