#!/usr/bin/env bash
# The GPU check: one prepared command for a lent GPU machine that can download nothing.
#
# Here, first:   python scripts/gpu_bundle.py      -> .gpu/load1 .. loadN (each under the device tool's
#                                                     64 MiB per call: wheels, me5-small's files, data)
# Then one device call per load, in a row (the machine keeps ignored paths while it stays warm):
#   run(command="ls .gpu", carry=[".gpu/load1"]) ... run(command="bash scripts/gpu_check.sh",
#   carry=[".gpu/loadN"], timeout_s=600)
# On the machine this installs the carried wheels (no index) into /tmp/site over the image's torch,
# builds me5-small from the carried files, then runs: the demo on one GPU, the demo under ZeRO-3,
# the training benchmark and Tatoeba over every offline language, printing examples/s, tokens/s,
# peak GPU memory and wall times. The log is $OUT/gpu_check.log (OUT: the device tool's folder).
# Budget: about 9 minutes on an H200 (set STEP_S to change each step's limit).
# Checked without a GPU: UNTIL=install BUNDLE=/tmp/b PYTHON=<fresh venv>/bin/python bash scripts/gpu_check.sh
# reassembles a bundle built for that Python (gpu_bundle.py --python-version) and installs it.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
STEP_S=${STEP_S:-150}
BUNDLE=${BUNDLE:-.gpu}  # the carried loads
UNTIL=${UNTIL:-all}  # install: stop once the carried wheels import
step() { echo; echo "== $1 ($(date +%T))"; }
timed() { local t0=$SECONDS; timeout "$STEP_S" "$@"; local rc=$?; echo "-- rc=$rc wall=$((SECONDS - t0)) s: $*"; }

step "reassemble the loads"
B=/tmp/gpu-bundle
rm -rf "$B" && mkdir -p "$B"
ls -d "$BUNDLE"/load*/ || { echo "no $BUNDLE/load* here: build them with scripts/gpu_bundle.py, carry them"; exit 2; }
for load in "$BUNDLE"/load*/; do cp -r "$load". "$B"/; done
for first in $(find "$B" -name '*.part00'); do
  base=${first%.part00}
  cat "$base".part* > "$base" && rm "$base".part*
done

step "install the carried wheels over the image's packages"
$PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$B"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
$PY - <<'EOF' || exit 1
import torch, transformers, adapters, deepspeed, mlflow, faiss, datasets, seqeval, adapter_stilts.pipeline
gpu = (f"{torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB, "
       f"bf16 {torch.cuda.is_bf16_supported()}") if torch.cuda.is_available() else "no GPU"
print("torch", torch.__version__, "| cuda", torch.version.cuda, "|", gpu)
print("transformers", transformers.__version__, "| adapters", adapters.__version__, "| deepspeed", deepspeed.__version__,
      "| mlflow", mlflow.__version__, "| faiss", faiss.__version__)
EOF
[ "$UNTIL" = install ] && { echo "installed and imported (UNTIL=install)"; exit 0; }

step "data and me5-small from the carried files"
# where every experiment and the benchmark look (data.local_dir's default), as beside a checkout here
mkdir -p ../shared/data && tar -xJf "$B"/data/shared-data.tar.xz -C ../shared/data || exit 1
export ADAPTER_STILTS_CACHE=/tmp/stilts-cache
mkdir -p "$ADAPTER_STILTS_CACHE"/archives && cp "$B"/me5/*.zip "$ADAPTER_STILTS_CACHE"/archives/
$PY - "$B" <<'EOF' || exit 1
import hashlib, json, sys, zipfile
from pathlib import Path
bundle = Path(sys.argv[1])
want = json.loads((bundle / "bundle.json").read_text())["me5_sha256"]
for z in (bundle / "me5").glob("*.zip"):
    for member in zipfile.ZipFile(z).namelist():
        got = hashlib.sha256(zipfile.ZipFile(z).read(member)).hexdigest()
        assert got == want[member], f"{member}: sha256 {got} is not the bundle's {want[member]}"
from adapter_stilts.models.me5_small import ensure_me5_small
print("me5-small at", ensure_me5_small())
EOF

export MLFLOW_TRACKING_URI=sqlite:////tmp/gpu-mlflow.db
COMMON=(--set tracking.output_dir=/tmp/gpu-out)

step "the demo on one GPU (python run.py)"
timed $PY run.py --exp demo "${COMMON[@]}"
step "the demo's targets under ZeRO-3 (deepspeed launcher, 1 GPU)"
timed deepspeed --num_gpus 1 run.py --exp demo "${COMMON[@]}" --set name=demo-zero3 \
  --set training.deepspeed=zero3 --set baseline=false
step "the training benchmark (speed mode, 800 examples)"
timed $PY bench/throughput.py --seeds 1
step "Tatoeba over every offline language (scoring on the GPU, search with faiss on the CPU)"
timed $PY bench/throughput.py --mode eval

step "the runs' figures"
$PY run.py results --out "$OUT"/results.csv >/dev/null && $PY - "$OUT"/results.csv <<'EOF'
import sys, pandas as pd
t = pd.read_csv(sys.argv[1])
print(t.groupby(["experiment", "setup", "target_task"])["score"].mean().round(4).to_string())
EOF
grep -h "examples/s\|peak GPU memory" "$OUT"/gpu_check.log | grep -v "^--" | sort -u | tail -40
echo "done in $SECONDS s"
