#!/bin/bash
# `make fuzz-build-check`: run build.sh as ClusterFuzzLite would, without Docker, then (RUNS > 0)
# run every fuzzer it produced for RUNS iterations (or SECONDS, whichever ends first) on its seed
# corpus.
#
#   .clusterfuzzlite/check_build.sh PYTHON [RUNS [SECONDS]]
#
# $SRC/$OUT/$WORK are temporary directories (OUT=DIR keeps the outputs there instead; SRC_TREE=DIR
# builds another copy of the tree). Shims stand in for the base image: `compile_python_fuzzer`
# writes a launcher that runs `PYTHON harness.py "$@"` (no PyInstaller), `pip3` is a no-op (the
# environment of PYTHON already has exitlab installed: reinstalling would replace an editable
# install), `python3` is PYTHON.
set -euo pipefail

PY=${1:?usage: check_build.sh PYTHON [RUNS]}
RUNS=${2:-0}
SECONDS_EACH=${3:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=${SRC_TREE:-$ROOT}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUTDIR=${OUT:-$TMP/out}
mkdir -p "$TMP/src" "$OUTDIR" "$TMP/work" "$TMP/bin"
ln -s "$TREE" "$TMP/src/exitlab"
cp "$TREE/.clusterfuzzlite/build.sh" "$TMP/src/build.sh"

cat > "$TMP/bin/compile_python_fuzzer" <<SHIM
#!/bin/bash
set -eu
harness=\$(cd "\$(dirname "\$1")" && pwd)/\$(basename "\$1")
name=\$(basename "\$1" .py)
printf '#!/bin/sh\n# LLVMFuzzerTestOneInput (local launcher written by check_build.sh)\nexec "%s" "%s" "\$@"\n' "$PY" "\$harness" > "\$OUT/\$name"
chmod +x "\$OUT/\$name"
echo "compile_python_fuzzer (shim): \$OUT/\$name -> \$harness"
SHIM
printf '#!/bin/sh\necho "pip3 $* (shim: skipped; %s already has exitlab installed)"\n' "$PY" > "$TMP/bin/pip3"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PY" > "$TMP/bin/python3"
chmod +x "$TMP/bin/"*

SRC=$TMP/src OUT=$OUTDIR WORK=$TMP/work CFLAGS="" CXXFLAGS="" SANITIZER=address PATH="$TMP/bin:$PATH" \
  bash -eu "$TMP/src/build.sh"

fuzzers=()
for f in "$OUTDIR"/*; do
  if [ -f "$f" ] && [ -x "$f" ]; then fuzzers+=("$(basename "$f")"); fi
done
[ ${#fuzzers[@]} -gt 0 ] || { echo "check_build: build.sh produced no fuzzer" >&2; exit 1; }
for name in "${fuzzers[@]}"; do
  for need in "${name}_seed_corpus.zip" "$name.dict"; do
    [ -s "$OUTDIR/$need" ] || { echo "check_build: $need missing for $name" >&2; exit 1; }
  done
done
# The shipped binutils must run on their own libraries (as they will in the runner image).
echo '.text' > "$TMP/work/probe.s"
LD_LIBRARY_PATH="$OUTDIR/binutils" "$OUTDIR/binutils/as" --64 -o "$TMP/work/probe.o" "$TMP/work/probe.s" \
  || { echo "check_build: the shipped binutils/as does not run" >&2; exit 1; }
echo "check_build: ${#fuzzers[@]} fuzzers: ${fuzzers[*]}"

[ "$RUNS" -gt 0 ] || exit 0
for name in "${fuzzers[@]}"; do
  corpus="$TMP/corpus/$name"
  mkdir -p "$corpus"
  "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$OUTDIR/${name}_seed_corpus.zip" "$corpus"
  echo "check_build: running $name for $RUNS iterations"
  (cd "$TMP/work" && "$OUTDIR/$name" "$corpus" -dict="$OUTDIR/$name.dict" -atheris_runs="$RUNS" \
      -max_total_time="$SECONDS_EACH" -print_final_stats=1 2>&1 | tail -n 12)
done
echo "check_build: every fuzzer built and ran"
