#!/usr/bin/env bash
# Make fairseq usable on a bare GPU machine that has torch but no network: install the carried wheels
# (.whl/: hydra-core, omegaconf, antlr4 runtime, bitarray) and fairseq-fixed's source with only the two Cython
# modules training needs (the C++/CUDA extensions are for other models). Idempotent. Prints the PYTHONPATH to use.
set -euo pipefail
repo=$(pwd)
site=/tmp/site
src=/tmp/fs/fairseq_fixed-0.12.3.1
if [ ! -d "$site/hydra" ]; then
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" \
    .whl/*.whl .whl/antlr4-python3-runtime-*.tar.gz >&2
fi
if [ ! -d "$src" ]; then
  mkdir -p /tmp/fs && tar xzf .whl/fairseq_fixed-*.tar.gz -C /tmp/fs
fi
if ! ls "$src"/fairseq/data/data_utils_fast*.so >/dev/null 2>&1; then
  (cd "$src" && python3 - >&2 <<'PY'
import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

modules = ["data_utils_fast", "token_block_utils_fast"]
exts = [Extension(f"fairseq.data.{m}", [f"fairseq/data/{m}.pyx"], include_dirs=[numpy.get_include()],
                  language="c++") for m in modules]
setup(name="fairseq-cython", ext_modules=cythonize(exts, language_level=3), script_args=["build_ext", "--inplace", "-q"])
PY
  )
fi
echo "$src:$site:$repo"
