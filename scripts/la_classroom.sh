#!/usr/bin/env bash
# Reproduce results/la_classroom.{csv,json,md}: real LA, 1 labelled volume (first of train.list), classroom
# preset (half resolution, offline tiny SAM, 8-filter V-Net, 1000 iterations), evaluated on test.list when the
# data folder has one, else on the validation split (last 16 of train.list, excluded from training).
#   DATA=../shared/data/LA bash scripts/la_classroom.sh [row ...]      (default: every row)
# DATA defaults to where the package looks ($SFR_LA_DIR, else data/LA: sfr_teach.data.resolve_la_dir) and is
# written relative to the repository (sfr_teach.data.portable_path), so no command in the table names a machine.
# Each row is one `sfr-teach run`; its command is written to <run>/command.txt and lands in the table.
# SFR rows share one SAM fine-tuning (the first SFR row makes it, the others reuse it with --sam-from).
set -euo pipefail
DATA=$(python -c 'import sys; from sfr_teach.data import portable_path, resolve_la_dir
print(portable_path(resolve_la_dir(sys.argv[1] or None)))' "${DATA:-}")
OUT=${OUT:-runs/la_classroom}
LABELED=${LABELED:-1}
THREADS=${THREADS:-2}
SAM=$OUT/mt_sfr
run() {
  local name=$1; shift
  local cmd="sfr-teach run --preset classroom --dataset la --data-dir $DATA --labeled $LABELED --set num_threads=$THREADS $* --out $OUT/$name"
  mkdir -p "$OUT/$name"
  echo "$cmd" > "$OUT/$name/command.txt"
  echo ">> $cmd"
  $cmd > "$OUT/$name/stdout.log" 2>&1
}
rows=("$@")
[ ${#rows[@]} -gt 0 ] || rows=(sup st mt mt_sfr st_sfr mt_sfrplus uamt uamt_sfr acmt acmt_sfr magic magic_sfr)
for r in "${rows[@]}"; do
  case $r in
    sup)        run sup        --method supervised ;;
    st)         run st         --method self_training ;;
    mt)         run mt         --method mean_teacher ;;
    mt_sfr)     run mt_sfr     --method mean_teacher --sfr ;;
    st_sfr)     run st_sfr     --method self_training --sfr --sam-from $SAM ;;
    mt_sfrplus) run mt_sfrplus --method mean_teacher --sfr-plus --sam-from $SAM ;;
    mt_online)  run mt_online  --method mean_teacher --sfr --pseudo-labels online --sam-from $SAM ;;
    uamt)       run uamt       --method ua_mt ;;
    uamt_sfr)   run uamt_sfr   --method ua_mt --sfr --sam-from $SAM ;;
    acmt)       run acmt       --method ac_mt ;;
    acmt_sfr)   run acmt_sfr   --method ac_mt --sfr --sam-from $SAM ;;
    magic)      run magic      --method magicnet ;;
    magic_sfr)  run magic_sfr  --method magicnet --sfr --sam-from $SAM ;;
    *) echo "unknown row $r" >&2; exit 2 ;;
  esac
done
python scripts/collect_results.py "$OUT"/* --out results/la_classroom
