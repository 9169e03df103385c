#!/usr/bin/env bash
# Reproduce the paper profiles at scale on one GPU, in one call:
#   1. check that a CUDA case gives the CPU's record within tolerance (a small real matrix run on
#      both devices; exit 1 if not, before any long run);
#   2. run the GPU profiles with several cases at once on the device, each in
#      results/<profile>@<device>, resuming whatever is already stored there;
#   3. print the timings and the leaderboard paths.
# Usage: bash scripts/gpu-reproduce.sh [WORKERS] [PROFILE...]   (defaults: 8 workers, all three)
# Sizes (each profile's header has its budget): ott2016-digits-gpu up to 528 short cases;
# ott2016-overfit-gpu up to 96 cases of GRU-2048; ott2016-chars-gpu up to 384 cases of GRU-512 to
# GRU-2048 (a day of one GPU): name the profiles to run a part, e.g. ... 8 ott2016-overfit-gpu.
# Needs: qbench installed with a CUDA build of torch, the datasets (fsdd, brown-char) obtainable.
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-8}
shift || true
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(ott2016-digits-gpu ott2016-chars-gpu ott2016-overfit-gpu)
# the model token of the device name ("NVIDIA H100 80GB HBM3" -> h100, "NVIDIA H200" -> h200):
# the last word would name the memory type on some cards
device_name=$(python -c "
import re, torch
assert torch.cuda.is_available(), 'no CUDA device'
name = torch.cuda.get_device_name(0)
model = re.findall(r'\b[A-Z]+[0-9]+[A-Za-z]*\b', name.replace('NVIDIA', ''))
print((model[0] if model else name.split()[-1]).lower())")
check=$(mktemp -d)
cat > "$check/check.toml" <<'TOML'
name = "cuda-check"
seeds = [0]
[[quantizer]]
name = "float"
[[quantizer]]
name = "ternary"
[[cell]]
name = "gru"
hidden = 64
[[dataset]]
name = "pydoc-char"
max_chars = 40000
[train]
epochs = 1
batch = 16
bptt = 32
max_steps = 40
eval_tokens = 4000
TOML
echo "== 1. CUDA against CPU on $(python -c 'import torch; print(torch.cuda.get_device_name(0))')"
qbench run --matrix "$check/check.toml" --out "$check/cpu" --device cpu --workers 1 --no-progress
qbench run --matrix "$check/check.toml" --out "$check/cuda" --device cuda --workers 1 --no-progress
python - "$check" <<'PY'
import json, sqlite3, sys
def records(path):
    db = sqlite3.connect(f"{path}/qbench.sqlite")
    return {c: json.loads(r) for c, r in db.execute("SELECT case_id, record FROM records")}
cpu, cuda = records(sys.argv[1] + "/cpu"), records(sys.argv[1] + "/cuda")
worst = 0.0
for case_id, a in cpu.items():
    b = cuda[case_id]
    for key in ("test_bpc", "valid_bpc"):
        worst = max(worst, abs(a[key] - b[key]) / abs(a[key]))
print(f"largest relative difference CPU vs CUDA over {len(cpu)} cases: {worst:.2e}")
sys.exit(0 if worst < 2e-3 else 1)
PY
echo "== 2. profiles on ${device_name} with ${workers} cases at once"
for profile in "${profiles[@]}"; do
  start=$(date +%s)
  qbench run --matrix "matrices/${profile}.toml" --out "results/${profile}@${device_name}" --device cuda \
    --workers "$workers" --no-progress || echo "(${profile}: exit $?, see its leaderboard's failure table)"
  echo "${profile}: $(( $(date +%s) - start )) s on ${device_name}, $(date -u +%F)"
done
