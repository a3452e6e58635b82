#!/usr/bin/env bash
# The U-Net stage of drive_frontier.py for many rows at once on one GPU: one process per row (each
# process is bound by Python's per-step overhead, so rows share the GPU well), over releases made
# beforehand on the CPU with `drive_frontier.py --stage release` and copied to RUNS.
#
#   benchmarks/drive_frontier_gpu.sh RUNS DRIVE LOGS ROW [ROW ...]
#
# Each row writes RUNS/<row>@<device>/row.json (merge them into benchmarks/runs/drive_frontier/ and run
# `drive_frontier.py --rows none` to rewrite the table); its log goes to LOGS/<row>.log. A row that
# runs past ROW_TIMEOUT seconds (default 480) is stopped and stays out of the table. DEVICE (default
# cuda) and STEPS (default 3000) exist to try the script on a CPU with a few steps.
set -u
if [ $# -lt 4 ]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
runs=$1 drive=$2 logs=$3
shift 3
mkdir -p "$logs"
for row in "$@"; do
  OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 timeout "${ROW_TIMEOUT:-480}" python3 benchmarks/drive_frontier.py \
    --stage unet --device "${DEVICE:-cuda}" --steps "${STEPS:-3000}" --runs "$runs" --drive "$drive" --results "$logs/table" --rows "$row" \
    > "$logs/$row.log" 2>&1 &
done
status=0
for job in $(jobs -p); do
  wait "$job" || status=1
done
exit $status
