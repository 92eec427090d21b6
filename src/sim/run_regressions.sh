#!/usr/bin/env bash
# Replays every seed listed in regressions.txt (first word of each non-comment line) and fails if
# any of them finds a violation. Usage: run_regressions.sh DTX_SIM REGRESSIONS_FILE
set -euo pipefail
sim=$1
list=$2
n=0
while read -r seed _; do
  case "$seed" in ''|'#'*) continue ;; esac
  # WORKLOAD:SEED replays a seed of another workload (e.g. keys:3478).
  args=(--seed "${seed#*:}")
  [[ "$seed" == *:* ]] && args+=(--workload "${seed%%:*}")
  if ! out=$("$sim" "${args[@]}"); then
    echo "$out"
    echo "regression seed $seed fails: replay with $sim ${args[*]} --trace"
    exit 1
  fi
  n=$((n + 1))
done < "$list"
echo "sim_regressions: $n seeds replayed, no violation"
