#!/usr/bin/env bash
# Bring up a real single-node SLURM (Debian's slurm-wlm + munge) on localhost for the SLURM test
# tier, with fake GPUs so GPU routing is exercised. Root on Debian only; no systemd needed.
# Records the PID of every daemon it starts in $STATE, and the files it writes, so down.sh stops
# and removes exactly those.
#   STATE      where PID files, the slurm.conf backup and logs go (required)
#   FAKE_GPUS  fake gpu GRES on the node (default 1)
set -euo pipefail
STATE=${STATE:?set STATE to a directory for PID files}
FAKE_GPUS=${FAKE_GPUS:-1}
mkdir -p "$STATE"
say() { echo "[slurm-up $(date +%T)] $*"; }
wait_for() { # wait_for SECONDS CMD...: poll every 0.2 s until CMD succeeds
  local n=$(($1 * 5))
  shift
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

if ! dpkg -s slurm-wlm munge >/dev/null 2>&1; then
  say "apt-get install slurm-wlm munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >"$STATE/apt.log" 2>&1
  apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE/apt.log" 2>&1 ||
    { tail -20 "$STATE/apt.log"; exit 1; }
fi

# munge: the package creates the key; the daemon runs as user munge
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --force
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! munge -n </dev/null >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  wait_for 10 test -s /run/munge/munged.pid
  cp /run/munge/munged.pid "$STATE/munged.pid"
fi
wait_for 10 sh -c 'munge -n </dev/null | unmunge' || { echo "munge does not work"; exit 1; }

# configuration: keep any existing files, down.sh puts them back
host=$(hostname -s)
for f in slurm.conf gres.conf; do
  if [ -e "/etc/slurm/$f" ] && [ ! -e "$STATE/$f.orig" ]; then cp -p "/etc/slurm/$f" "$STATE/$f.orig"; fi
done
touch "$STATE/config-written"
hw=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//')
mem=$(slurmd -C | head -1 | sed -E 's/.*RealMemory=([0-9]+).*/\1/')
rm -rf /run/weaksam-fake-gpu
mkdir -p /run/weaksam-fake-gpu
# a gpu GRES needs File= naming character devices: copies of /dev/null (1, 3)
for ((i = 0; i < FAKE_GPUS; i++)); do mknod -m 0666 "/run/weaksam-fake-gpu/gpu$i" c 1 3; done
cat >/etc/slurm/gres.conf <<CONF
AutoDetect=off
NodeName=$host Name=gpu Type=fake File=/run/weaksam-fake-gpu/gpu[0-$((FAKE_GPUS - 1))]
CONF
cat >/etc/slurm/slurm.conf <<CONF
# single-node test cluster written by weaksam tests/slurm/up.sh
ClusterName=weaksam-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# finished jobs stay visible to squeue / scontrol for an hour: the tests read their records
MinJobAge=3600
KillWait=5
InactiveLimit=0
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 $hw RealMemory=$mem Gres=gpu:fake:$FAKE_GPUS State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=512
PartitionName=gpu Nodes=ALL Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=512
CONF
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm

/usr/sbin/slurmctld -c # -c: forget jobs of any earlier cluster
wait_for 30 scontrol ping || { tail -20 /var/log/slurm/slurmctld.log; exit 1; }
wait_for 10 test -s /run/slurmctld.pid # written after the fork
cp /run/slurmctld.pid "$STATE/slurmctld.pid"
/usr/sbin/slurmd
wait_for 10 test -s /run/slurmd.pid
cp /run/slurmd.pid "$STATE/slurmd.pid"
if ! wait_for 30 sh -c "sinfo -h -n $host -o %T | grep -qx idle"; then
  scontrol update nodename="$host" state=resume || true
  wait_for 10 sh -c "sinfo -h -n $host -o %T | grep -qx idle" ||
    { sinfo -R; tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; exit 1; }
fi
say "up: $(sinfo -h -o '%P %T %G' | tr '\n' ' ')"
