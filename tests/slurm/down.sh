#!/usr/bin/env bash
# Stop only the daemons tests/slurm/up.sh started (by recorded PID, checking the process name),
# and put back the configuration it replaced.
set -uo pipefail
STATE=${STATE:?set STATE to the directory up.sh used}
if [ -f "$STATE/slurmctld.pid" ]; then
  scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for _ in $(seq 1 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
fi
for daemon in slurmd slurmctld munged; do
  f="$STATE/$daemon.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$daemon" ]; then
    kill -TERM "$pid"
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "[slurm-down] stopped $daemon ($pid)"
  fi
  rm -f "$f"
done
# the daemons run as SlurmUser and cannot remove their root-owned pid files
for f in /run/slurmctld.pid /run/slurmd.pid; do
  if [ -f "$f" ] && ! kill -0 "$(cat "$f")" 2>/dev/null; then rm -f "$f"; fi
done
if [ -f "$STATE/config-written" ]; then
  # a slurm.conf left behind slows every later Snakemake start-up (it probes the cluster)
  for f in slurm.conf gres.conf; do
    if [ -e "$STATE/$f.orig" ]; then mv "$STATE/$f.orig" "/etc/slurm/$f"; else rm -f "/etc/slurm/$f"; fi
  done
  rm -rf /run/weaksam-fake-gpu "$STATE/config-written"
fi
exit 0
