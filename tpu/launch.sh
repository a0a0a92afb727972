#!/usr/bin/env bash
# Runs one topojax experiment on every host of a Cloud TPU VM pod slice.
#
#   tpu/launch.sh TPU_NAME ZONE configs/bricks.py workdirs/bricks [extra flags...]
#
# Idempotent: each host syncs the repository, installs it (a no-op when already
# installed) and starts the same command; TOPOJAX_JAX_INIT=1 makes the trainer
# call jax.distributed.initialize() before touching devices. Re-running with the
# same workdir (use a gs:// path on pods) resumes from the latest checkpoint.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,9p' "$0"; exit 2
fi
tpu=$1; zone=$2; config=$3; workdir=$4; shift 4
repo_dir=topojax

gcloud compute tpus tpu-vm scp --recurse --zone "$zone" --worker=all \
  "$(git rev-parse --show-toplevel)" "$tpu:~/" >/dev/null
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "
  set -e
  cd ~/$repo_dir
  python3 -m pip install -q -e . 'jax[tpu]'
  TOPOJAX_JAX_INIT=1 python3 -m experiments.train --config $config --workdir $workdir $*
"
