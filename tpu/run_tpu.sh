#!/usr/bin/env bash
# Runs one topojax module on every host of a Cloud TPU VM (a pod slice or one host).
#
#   tpu/run_tpu.sh [OPTIONS] TPU_NAME ZONE [FLAGS...]
#
#   tpu/run_tpu.sh my-v5e-32 us-west4-a \
#       --config configs/bricks.py --workdir /mnt/bucket/bricks
#   tpu/run_tpu.sh --module=experiments.sweep --detach my-v5e-32 us-west4-a \
#       --config configs/topomortar.py:data_dir=/mnt/bucket/TopoMortar \
#       --workdir /mnt/bucket/topomortar_sweep
#
# FLAGS go to `python -m MODULE` on every host. OPTIONS (before TPU_NAME):
#   --module=M          the module to run (default experiments.train).
#   --project=P         the gcloud project (default: gcloud's configured one).
#   --sync=copy|git|none
#                       copy (default): ship this checkout's files (tracked and
#                         untracked-but-not-ignored, uncommitted edits included);
#                       git: clone `origin` on each host, or fetch and check out
#                         this checkout's HEAD commit there (it must be pushed);
#                       none: run what the hosts already have.
#   --detach            run in the background (nohup); output in ~/topojax_run.log
#                       on each host, process id in ~/topojax_run.pid.
#   --stop              stop a detached run (the id in ~/topojax_run.pid); no FLAGS.
#   --dry_run           print the gcloud commands instead of running them.
#
# Idempotent: every step is skipped when already done. Each host keeps the code
# in ~/topojax and a virtual environment in ~/topojax_venv, created only when
# missing; `pip install -e . "jax[tpu]"` runs only when pyproject.toml changed
# (a stamp file keyed by its hash). Then every host runs
# `TOPOJAX_JAX_INIT=1 python -m MODULE FLAGS`, which calls
# jax.distributed.initialize() before touching devices
# (experiments/_cli.py). Relaunching the same command resumes from the latest
# checkpoint in --workdir, which must be shared by all hosts (see tpu/README.md).
set -euo pipefail

# Prints the header above (to stderr on a usage error) and exits.
usage() {
  local text
  text=$(awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0")
  if [ "${1:-2}" = 0 ]; then echo "$text"; else echo "$text" >&2; fi
  exit "${1:-2}"
}

module=experiments.train
project=""
sync=copy
detach=false
stop=false
dry_run=false
while [ $# -gt 0 ]; do
  case "$1" in
    --module=*) module=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --sync=*) sync=${1#*=} ;;
    --detach) detach=true ;;
    --stop) stop=true ;;
    --dry_run) dry_run=true ;;
    -h|--help) usage 0 ;;
    --*) echo "run_tpu.sh: unknown option $1 (options go before TPU_NAME)" >&2; usage ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 2 ] || usage
tpu=$1
zone=$2
shift 2
case "$sync" in copy|git|none) ;; *) echo "run_tpu.sh: --sync=$sync is not copy, git or none" >&2; exit 2 ;; esac
[[ "$module" =~ ^[A-Za-z_][A-Za-z0-9_.]*$ ]] || { echo "run_tpu.sh: --module=$module is not a module name" >&2; exit 2; }

gcloud_flags=(--zone "$zone")
if [ -n "$project" ]; then gcloud_flags+=(--project "$project"); fi

# Runs (or with --dry_run prints) a command.
run() {
  if $dry_run; then printf '%q ' "$@"; echo; else "$@"; fi
}

# Runs a bash script on every host of the TPU VM (--dry_run: prints it).
on_all_workers() {
  local command=(gcloud compute tpus tpu-vm ssh "$tpu" "${gcloud_flags[@]}" --worker=all)
  if $dry_run; then
    printf '%q ' "${command[@]}"; printf -- '--command "bash -c SCRIPT", SCRIPT:\n%s\n' "$1"
  else
    "${command[@]}" --command "bash -c $(printf '%q' "$1")"
  fi
}

# Paths on the hosts; their shell expands the ~, not this one.
repo_dir=\~/topojax
venv_dir=\~/topojax_venv
log_file=\~/topojax_run.log
pid_file=\~/topojax_run.pid

if $stop; then
  on_all_workers "
    if [ -f $pid_file ]; then
      kill -- -\$(cat $pid_file) 2>/dev/null || true  # its whole process group
      rm -f $pid_file
    fi"
  exit 0
fi

# -----------------------------------------------------------------------------
# 1. The code: ~/topojax on every host.
# -----------------------------------------------------------------------------
root=$(git rev-parse --show-toplevel)
case "$sync" in
  copy)
    tarball=$(mktemp "${TMPDIR:-/tmp}/topojax_src.XXXXXX.tgz")
    trap 'rm -f "$tarball"' EXIT
    # Tracked and untracked-but-not-ignored files that exist (not workdirs/).
    (cd "$root" && git ls-files -z --cached --others --exclude-standard |
       while IFS= read -r -d '' f; do if [ -f "$f" ]; then printf '%s\0' "$f"; fi; done |
       tar --null -T - -czf "$tarball")
    run gcloud compute tpus tpu-vm scp "${gcloud_flags[@]}" --worker=all \
      "$tarball" "$tpu:~/topojax_src.tgz"
    # Unpack next to the old copy, then swap, so deleted files disappear too.
    sync_script="rm -rf $repo_dir.new && mkdir -p $repo_dir.new &&
      tar -xzf ~/topojax_src.tgz -C $repo_dir.new && rm -rf $repo_dir &&
      mv $repo_dir.new $repo_dir && rm ~/topojax_src.tgz" ;;
  git)
    url=$(git -C "$root" remote get-url origin)
    commit=$(git -C "$root" rev-parse HEAD)
    sync_script="if [ -d $repo_dir/.git ]; then git -C $repo_dir fetch -q origin;
      else git clone -q $(printf '%q' "$url") $repo_dir; fi &&
      git -C $repo_dir checkout -q --detach $commit" ;;
  none)
    sync_script="test -d $repo_dir" ;;
esac

# -----------------------------------------------------------------------------
# 2. The environment (only what is missing), 3. the program on every host.
# -----------------------------------------------------------------------------
setup_script="set -euo pipefail
$sync_script
if [ ! -x $venv_dir/bin/python ]; then
  if python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python3 -m venv $venv_dir
  else  # TPU VM images ship Python 3.10; uv fetches a standalone 3.11
    python3 -m pip install -q --user uv
    ~/.local/bin/uv venv -q --seed --python 3.11 $venv_dir
  fi
fi
stamp=$venv_dir/.topojax-installed-\$(sha256sum $repo_dir/pyproject.toml | cut -c1-16)
if [ ! -e \"\$stamp\" ]; then
  $venv_dir/bin/pip install -q --upgrade pip
  $venv_dir/bin/pip install -q -e $repo_dir 'jax[tpu]'
  rm -f $venv_dir/.topojax-installed-*
  touch \"\$stamp\"
fi
cd $repo_dir"

program="TOPOJAX_JAX_INIT=1 $venv_dir/bin/python -m $module"
for flag in "$@"; do
  program+=" $(printf '%q' "$flag")"
done

if $detach; then
  on_all_workers "$setup_script
if [ -f $pid_file ] && kill -0 \$(cat $pid_file) 2>/dev/null; then
  echo \"\$(hostname): a run is still going (pid \$(cat $pid_file)); tpu/run_tpu.sh --stop first\" >&2
  exit 1
fi
setsid nohup bash -c $(printf '%q' "$program") > $log_file 2>&1 < /dev/null &
echo \$! > $pid_file
echo \"\$(hostname): started pid \$!, log $log_file\""
else
  on_all_workers "$setup_script
$program"
fi
