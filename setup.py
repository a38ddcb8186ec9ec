"""Builds graphforge's native extension ``graphforge._C``.

Metadata (name, version, dependencies) lives in pyproject.toml; this file only adds
the extension. The C++ kernels are always built; the CUDA kernels are added when a CUDA
toolkit is found and torch is a CUDA build -- no GPU is needed to compile them.

Environment:
    FORCE_CUDA=1       build the CUDA kernels even if the checks above fail
    FORCE_ONLY_CPU=1   never build the CUDA kernels
    GRAPHFORGE_NO_EXTENSION=1  build the pure-Python package without graphforge._C (the ops
                       then run their slower PyTorch reference); without it, building a wheel
                       or an install with torch missing is an error
    TORCH_CUDA_ARCH_LIST  GPU architectures (default "8.0;9.0+PTX" when no GPU is visible)
    MAX_JOBS           parallel compile jobs (ninja)

Install with ``pip install --no-build-isolation -e .`` so the extension is compiled
against the torch already installed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = "csrc"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in {"1", "true", "yes", "on"}


def _default_cuda_home() -> None:
    # torch guesses CUDA_HOME from `nvcc` on PATH; the usual install location is a safer default.
    if not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
        if os.path.exists("/usr/local/cuda/bin/nvcc"):
            os.environ["CUDA_HOME"] = "/usr/local/cuda"


#: setup.py commands that compile the extension (sdist, egg_info, dist_info and the like
#: only describe or package the sources, and need no torch).
_BUILD_COMMANDS = {"build", "build_ext", "bdist", "bdist_wheel", "bdist_egg", "install", "develop", "editable_wheel"}


def _metadata_only() -> bool:
    return not _BUILD_COMMANDS.intersection(sys.argv[1:])


def get_extensions() -> list:
    _default_cuda_home()
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension
    except ImportError:
        if _env_flag("GRAPHFORGE_NO_EXTENSION") or _metadata_only():
            if not _metadata_only():
                print("graphforge: GRAPHFORGE_NO_EXTENSION=1: building without the native extension", file=sys.stderr)
            return []
        sys.exit(
            "graphforge: torch is not importable, so the native extension graphforge._C cannot be built.\n"
            "Install torch first, then build against it without build isolation:\n"
            "    pip install 'torch>=2.14' && pip install --no-build-isolation .\n"
            "(or set GRAPHFORGE_NO_EXTENSION=1 for a pure-Python build that uses the slower reference ops)"
        )
    if _env_flag("GRAPHFORGE_NO_EXTENSION"):
        return []

    with_cuda = (CUDA_HOME is not None and torch.version.cuda is not None) or _env_flag("FORCE_CUDA")
    if _env_flag("FORCE_ONLY_CPU"):
        with_cuda = False

    sources = [f"{CSRC}/graphforge.cpp", f"{CSRC}/cpu/knn_cpu.cpp"]
    define_macros: list[tuple[str, str | None]] = []
    extra_compile_args: dict[str, list[str]] = {"cxx": ["-O3"]}
    extra_link_args: list[str] = []
    if sys.platform != "win32":
        extra_compile_args["cxx"].append("-fopenmp")
        extra_link_args.append("-fopenmp")
    if sys.platform == "darwin":  # Apple clang has no -fopenmp
        extra_compile_args["cxx"].remove("-fopenmp")
        extra_link_args.remove("-fopenmp")

    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        sources.append(f"{CSRC}/cuda/knn_cuda.cu")
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3", "--expt-relaxed-constexpr"]
        extension_cls = CUDAExtension
    else:
        extension_cls = CppExtension
    print(f"graphforge: building graphforge._C with{'' if with_cuda else 'out'} CUDA", file=sys.stderr)

    return [
        extension_cls(
            "graphforge._C",
            sources,
            include_dirs=[str(ROOT / CSRC)],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
            py_limited_api=False,
        )
    ]


def get_cmdclass() -> dict:
    try:
        from torch.utils.cpp_extension import BuildExtension
    except ImportError:
        return {}
    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=get_extensions(), cmdclass=get_cmdclass())
