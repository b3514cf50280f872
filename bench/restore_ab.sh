#!/bin/bash
# Restore of one data set, interleaved, from repositories made beforehand (issue 19):
#   restic       restic restore
#   old          axisor-backup restore, code at $OLD (git archive of the commit before)
#   new          axisor-backup restore, code at $NEW, small files in worker processes (default)
#   thr          the same code with worker processes off (AXISOR_RESTORE_PROCESS_FILES=10^9)
#   nv           new with --no-validate (what validation costs)
# Before each run: the previous target removed, `sync`, the kernel's caches dropped (a long
# series of restores and removals otherwise leaves the dentry cache in a state that made one
# run take 2x the system time of the next), and the repositories' packs read back into the
# page cache (warm for every tool). Needs root for drop_caches.
#
# Set up once (WORK holds axisor.toml, env.sh exporting XDG_* and AXISOR_BACKUP_PASSPHRASE,
# axisor-repo/ and restic-repo/ with one backup of the data each):
#   git archive <old commit> | tar -x -C /tmp/rs-old; git archive HEAD | tar -x -C /tmp/rs-new
#   WORK=/work/rs OLD=/tmp/rs-old NEW=/tmp/rs-new bench/restore_ab.sh 3
set -u
WORK=${WORK:-/work/rs}; OLD=${OLD:-/tmp/rs-old}; NEW=${NEW:-/tmp/rs-new}
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
cd "$WORK" || exit 1
. ./env.sh
export RESTIC_PASSWORD="$AXISOR_BACKUP_PASSPHRASE" RESTIC_CACHE_DIR="$WORK/restic-cache"
ROUNDS=${1:-3}
axisor() {  # code folder, then restore arguments
  local code=$1; shift
  /usr/bin/time -f "%e s %U+%S cpu %M KB" "$PY" -c "import sys; sys.path.insert(0, '$code'); from app.cli import main; sys.exit(main())" \
    --config axisor.toml restore latest "$@" >/dev/null
}
for r in $(seq "$ROUNDS"); do
  for v in ${VARIANTS:-restic old new thr nv}; do
    t="$WORK/t_$v"
    rm -rf "$t"; sync; echo 3 > /proc/sys/vm/drop_caches
    cat "$WORK"/axisor-repo/data/*/* "$WORK"/restic-repo/data/*/* > /dev/null 2>&1
    l0=$(cut -d' ' -f1 /proc/loadavg)
    case $v in
      restic) out=$( { /usr/bin/time -f "%e s %U+%S cpu %M KB" restic -q -r restic-repo restore latest --target "$t" >/dev/null; } 2>&1 | tail -1);;
      old) out=$( { axisor "$OLD" --target "$t"; } 2>&1 | tail -1);;
      new) out=$( { AXISOR_RESTORE_PROCESS_FILES=4096 axisor "$NEW" --target "$t"; } 2>&1 | tail -1);;
      thr) out=$( { AXISOR_RESTORE_PROCESS_FILES=1000000000 axisor "$NEW" --target "$t"; } 2>&1 | tail -1);;
      nv) out=$( { AXISOR_RESTORE_PROCESS_FILES=4096 axisor "$NEW" --no-validate --target "$t"; } 2>&1 | tail -1);;
    esac
    echo "round $r $v load $l0..$(cut -d' ' -f1 /proc/loadavg): $out"
  done
done
rm -rf "$WORK"/t_*
