#!/usr/bin/env bash
# Configures, builds and runs graphforge's C++ tests (ctest) against the venv's libtorch.
#   PYTHON=.venv/bin/python scripts/ctest.sh        (extra args go to cmake's configure)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
BUILD_DIR="${BUILD_DIR:-build/ctest}"
JOBS="${JOBS:-2}"

TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
CUDA_ARGS=()
# The pip torch is a CUDA build: its CMake config looks for a CUDA toolkit even for the
# CPU-only library. Point it at the local toolkit when there is one.
if [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
  CUDA_ROOT="${CUDA_HOME:-/usr/local/cuda}"
  # Without an arch list torch's CMake probes the (absent) GPU with a try_run that
  # CMake < 3.27 cannot configure for C++20 CUDA.
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
  # libtorch_cuda links nvrtc; a toolkit without it can use the copy in torch's pip wheels.
  if ! ls "$CUDA_ROOT"/lib64/libnvrtc.so* >/dev/null 2>&1; then
    NVRTC="$("$PYTHON" - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
hits = sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvrtc.so*")) +
              glob.glob(os.path.join(site, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*")))
print(hits[0] if hits else "")
PY
)"
    if [[ -n "$NVRTC" ]]; then CUDA_ARGS+=("-DCUDA_nvrtc_LIBRARY=$NVRTC"); fi
  fi
  CUDA_ARGS+=("-DCMAKE_CUDA_COMPILER=$CUDA_ROOT/bin/nvcc" "-DCUDAToolkit_ROOT=$CUDA_ROOT"
              "-DCUDA_TOOLKIT_ROOT_DIR=$CUDA_ROOT")
fi

cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
  -DPython_EXECUTABLE="$("$PYTHON" -c 'import sys; print(sys.executable)')" \
  "${CUDA_ARGS[@]}" "$@"
cmake --build "$BUILD_DIR" -j "$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure
