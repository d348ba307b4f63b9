#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: runs inside gcr.io/oss-fuzz-base/base-builder-python with
# $SRC, $OUT, $WORK, $CFLAGS and $SANITIZER set by the builder (`make fuzz-build-check` runs it
# locally with shims for pip3 and compile_python_fuzzer). Produces, in $OUT, one fuzzer per
# harness plus <name>_seed_corpus.zip and <name>.dict.
set -o pipefail

cd "$SRC/exitlab"

# Every harness, by path; a missing one fails the build (never a silently smaller fuzzing set).
HARNESSES=(
  exitlab/tools/fuzz/atheris_target.py    # one instruction + CPU state: every path vs Unicorn (differential)
  exitlab/tools/fuzz/atheris_length.py    # raw bytes -> the C length function and subset decoder
  exitlab/tools/fuzz/atheris_streams.py   # bytes -> a guest program through every engine x path
)
for h in "${HARNESSES[@]}"; do
  if [ ! -f "$h" ]; then
    echo "build.sh: harness $h is missing: refusing to build a partial fuzzing set" >&2
    exit 1
  fi
done

# The C extension is compiled by the normal install, so it picks up the sanitizer flags from
# CFLAGS; -fsanitize=fuzzer-no-link gives libFuzzer the C edges. _build.py compiles with
# -Werror, so clang's note about link-only flags must not become an error.
EXTRA_CFLAGS="-fsanitize=fuzzer-no-link"
case "${CC:-cc}" in *clang*) EXTRA_CFLAGS="$EXTRA_CFLAGS -Wno-error=unused-command-line-argument" ;; esac
ICED_PIN=$(python3 -c 'import re, tomllib; d = tomllib.load(open("pyproject.toml", "rb")); print(next(x for x in d["project"]["optional-dependencies"]["test"] if x.startswith("iced-x86")))')
CFLAGS="${CFLAGS:-} $EXTRA_CFLAGS" CXXFLAGS="${CXXFLAGS:-} $EXTRA_CFLAGS" pip3 install . "$ICED_PIN"

# PyInstaller bundles each harness with what it imports; the unicorn/capstone/iced wheels carry
# shared libraries and exitlab carries data files (guest sources, the contract JSON).
for h in "${HARNESSES[@]}"; do
  compile_python_fuzzer "$h" --runtime-hook .clusterfuzzlite/pyi_rth_binutils.py \
    --collect-all unicorn --collect-all capstone --collect-all iced_x86 \
    --collect-submodules emu --collect-submodules fastpath --collect-submodules exitlab \
    --collect-data emu --collect-data fastpath
done

# Guests are assembled at fuzz time (the stream harness) and the runner image has no binutils:
# ship as/ld and the libraries they load (not the C library) next to the fuzzers; the runtime
# hook above puts the directory on PATH and LD_LIBRARY_PATH.
mkdir -p "$OUT/binutils"
for tool in as ld; do
  bin=$(command -v "$tool") || { echo "build.sh: GNU $tool not found (install binutils)" >&2; exit 1; }
  cp "$bin" "$OUT/binutils/$tool"
  for lib in $(ldd "$bin" | awk '$3 ~ /^\// {print $3}'); do
    case "$(basename "$lib")" in
      libc.so.*|libm.so.*|libdl.so.*|libpthread.so.*|librt.so.*|ld-linux*) ;;
      *) cp -L "$lib" "$OUT/binutils/" ;;
    esac
  done
done

# Seed corpora from the committed test data, and the x86 dictionary for every fuzzer.
python3 -m exitlab.tools.fuzz.cflite_seeds "$OUT" --data tests/data
for h in "${HARNESSES[@]}"; do
  name=$(basename "$h" .py)
  cp .clusterfuzzlite/x86.dict "$OUT/$name.dict"
  test -f "$OUT/${name}_seed_corpus.zip" || { echo "build.sh: no seed corpus for $name" >&2; exit 1; }
done
echo "build.sh: built ${#HARNESSES[@]} fuzzers into $OUT"
