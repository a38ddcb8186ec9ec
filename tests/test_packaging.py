"""The source distribution holds every file the native build needs, and a build without torch
says so instead of silently producing no extension (fast: nothing is compiled)."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tracked(prefix: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", prefix], cwd=ROOT, capture_output=True, text=True, check=True)
    return {line for line in out.stdout.splitlines() if line}


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_sdist_has_every_file_the_build_needs(tmp_path):
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, timeout=300)
    (archive,) = tmp_path.glob("graphforge-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    needed = _tracked("csrc") | {"setup.py", "pyproject.toml", "MANIFEST.in", "CMakeLists.txt", "README.md",
                                 "graphforge/py.typed"}
    needed |= {p for p in _tracked("graphforge") if p.endswith(".py")}
    missing = sorted(needed - names)
    assert not missing, f"the sdist lacks {missing}"
    assert not [n for n in names if n.endswith((".so", ".pyc"))]


def test_building_the_extension_without_torch_is_a_clear_error(tmp_path):
    import shutil

    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "csrc", tmp_path / "csrc")
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = ['setup.py', 'build_ext'];"
            "runpy.run_path('setup.py', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "torch is not importable, so the native extension graphforge._C cannot be built" in out.stderr
    assert "--no-build-isolation" in out.stderr


def test_the_python_api_hides_torch_geometrics_jit_deprecation_warning():
    """PyG calls torch.jit.script on import; a graphforge user, CLI or API, is not shown that warning."""
    code = ("import warnings; warnings.simplefilter('error', FutureWarning); import graphforge; "
            "graphforge.get_model('gcn')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
