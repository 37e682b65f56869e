#!/usr/bin/env bash
# Before/after step time of two source trees of bioplastic, interleaved (issue 14).
#
#   benchmarks/step_time_ab.sh BEFORE_TREE AFTER_TREE OUT ROUNDS [step_time.py options...]
#
# e.g. git worktree add --detach /tmp/before 6f7962c
#      benchmarks/step_time_ab.sh /tmp/before . results/ab 3 --models mlp --threads 2 --repeats 5
#
# Each round runs benchmarks/step_time.py (this tree's script) once against each tree, alternating which goes
# first, so that drifting machine load affects both alike; the tree is chosen with PYTHONPATH, so both runs use
# this environment's torch. Each run's ratios are to plain PyTorch measured in the same process. The "after"
# runs add the BioTorch peer where it is importable; the "before" runs do not (--peer none). At the end the
# pooled tables (all rounds' repeats) of both are printed; the files are OUT/{before,after}/round_K/step_time.nc.
set -euo pipefail
if [ "$#" -lt 4 ]; then
    echo "usage: $0 BEFORE_TREE AFTER_TREE OUT ROUNDS [step_time.py options...]" >&2
    exit 2
fi
before=$(cd "$1" && pwd); after=$(cd "$2" && pwd); out=$3; rounds=$4; shift 4
opts=("$@")
for tree in "$before" "$after"; do
    [ -f "$tree/bioplastic/__init__.py" ] || { echo "$0: $tree is not a bioplastic source tree" >&2; exit 2; }
done
script="$(cd "$(dirname "$0")" && pwd)/step_time.py"
run() {  # which tree round
    local name=$1 tree=$2 k=$3 peer=none
    [ "$name" = after ] && peer=auto
    PYTHONPATH="$tree" python "$script" --out "$out/$name/round_$k" --peer "$peer" \
        --label "$name $(git -C "$tree" rev-parse --short HEAD 2>/dev/null || echo '?') round $k" "${opts[@]}"
}
for k in $(seq 1 "$rounds"); do
    if [ $((k % 2)) -eq 1 ]; then
        run before "$before" "$k"; run after "$after" "$k"
    else
        run after "$after" "$k"; run before "$before" "$k"
    fi
done
for name in before after; do
    echo "## $name"
    python "$script" --table "$out/$name"/round_*/step_time.nc
done
