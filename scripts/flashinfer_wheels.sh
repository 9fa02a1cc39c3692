#!/usr/bin/env bash
# Prepares FlashInfer (flashinfer-python, which JIT-compiles its kernels with nvcc and ninja) for a GPU
# machine that has no package index, with Python 3.12 and torch for CUDA 13 already there.
# Run from the project's root on a machine that reaches PyPI:  bash scripts/flashinfer_wheels.sh
# The wheels come out in two folders, each under 40 MB (a device call carries 64 MiB with the tree),
# both ignored by git:
#   .fia/part.aa                   first part of the flashinfer-python wheel (62 MB in all)
#   .fib/part.ab, *.whl, *.sh      its second part, the other wheels, install.sh and env.sh
# The other wheels: apache-tvm-ffi (FlashInfer's kernel ABI), ninja (its JIT runs the `ninja` command),
# einops (flashinfer.testing), tqdm, tabulate, requests and its four dependencies (`import flashinfer`).
# On the GPU machine, call 1 (carry .fia): mkdir -p /tmp/fi && cp .fia/part.aa /tmp/fi/
# call 2 (carry .fib): `source .fib/install.sh`: joins the parts, installs under /tmp/fisite what the
# machine lacks (--no-deps --no-index), and sources env.sh: PYTHONPATH, PATH (ninja) and
# FLASHINFER_WORKSPACE_BASE=/tmp/fiws (the JIT cache: /tmp/fiws/.cache/flashinfer/<version>/).
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
FI_VERSION=${FI_VERSION:-0.7.2.post1}  # the release checked on the H200 (0.7.4 is 101 MB and needs more)
rm -rf .fia .fib && mkdir -p .fia .fib
dl=$(mktemp -d /tmp/fi-dl.XXXXXX)
plat="--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
--platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any"
for p in "flashinfer-python==$FI_VERSION" apache-tvm-ffi==0.1.15.post2 ninja einops tqdm tabulate \
         requests urllib3 idna certifi charset-normalizer; do
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat \
    -d "$dl" "$p"
done
big=$(ls "$dl"/flashinfer_python-*.whl)
split -b 33000000 "$big" .fia/part.
mv .fia/part.ab .fib/
[ ! -e .fia/part.ac ] || { echo "flashinfer wheel needs more than two parts" >&2; exit 1; }
for w in "$dl"/*.whl; do [ "$w" = "$big" ] || cp "$w" .fib/; done
basename "$big" > .fib/big.name
cat > .fib/env.sh <<'ENV'
export PYTHONPATH=/tmp/fisite${PYTHONPATH:+:$PYTHONPATH}
export PATH=/tmp/fisite/bin:$PATH
export FLASHINFER_WORKSPACE_BASE=${FLASHINFER_WORKSPACE_BASE:-/tmp/fiws}
if ! command -v nvcc >/dev/null && [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
ENV
cat > .fib/install.sh <<'INST'
# sourced on the device machine after /tmp/fi/part.aa was copied there by the call before
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -d /tmp/fisite/flashinfer ]; then
  big=$(cat "$here/big.name")
  cat /tmp/fi/part.aa "$here/part.ab" > "/tmp/fi/$big"
  wheels=("/tmp/fi/$big")
  # each helper wheel only where the machine lacks the module (module:wheel-prefix)
  for pair in tvm_ffi:apache_tvm_ffi ninja:ninja einops:einops tqdm:tqdm tabulate:tabulate requests:requests urllib3:urllib3 \
              idna:idna certifi:certifi charset_normalizer:charset_normalizer; do
    mod=${pair%%:*}; whl=${pair#*:}
    python3 -c "import $mod" 2>/dev/null || wheels+=("$(ls "$here/$whl"-*.whl)")
  done
  command -v ninja >/dev/null || [[ " ${wheels[*]} " == *" $here/ninja-"* ]] || wheels+=("$(ls "$here"/ninja-*.whl)")
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/fisite "${wheels[@]}"
fi
source "$here/env.sh"
python3 -c "import flashinfer; print('flashinfer', flashinfer.__version__)"
INST
rm -rf "$dl"
du -sh .fia .fib
