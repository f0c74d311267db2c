#!/usr/bin/env bash
# A one-node SLURM on this machine, for tests/test_slurm.py (and .ci/run):
#   tests/slurm/start.sh [STATE_DIR]      (default: $NARROWFLOW_SLURM_DIR or /tmp/narrowflow-slurm)
# Installs slurm-wlm's daemons and munge from Debian where they are missing (needs root and
# the package index), writes STATE_DIR/slurm.conf for this host only (ports 6917/6918, so a
# system SLURM is left alone), starts munged (unless one answers already), slurmctld and
# slurmd, and waits until the node is idle. Clients use it with SLURM_CONF=STATE_DIR/slurm.conf
# (STATE_DIR/env holds that line). tests/slurm/stop.sh STATE_DIR stops what this started.
# Exit status 0: SLURM is up. Otherwise the last line of stderr says why not (no root, no
# package index, a daemon that did not start) and nothing is left running.
set -uo pipefail
DIR="${1:-${NARROWFLOW_SLURM_DIR:-/tmp/narrowflow-slurm}}"
HERE="$(cd "$(dirname "$0")" && pwd)"
fail() { echo "slurm: $*" >&2; "$HERE/stop.sh" "$DIR" >/dev/null 2>&1; exit 1; }

# already up (started earlier with this STATE_DIR, e.g. by .ci/run): nothing to do
if [ -f "$DIR/slurm.conf" ] && [ -f "$DIR/run/slurmctld.pid" ] && [ -f "$DIR/run/slurmd.pid" ] \
   && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null && kill -0 "$(cat "$DIR/run/slurmd.pid")" 2>/dev/null \
   && [ "$(SLURM_CONF="$DIR/slurm.conf" PATH="$PATH:/usr/sbin" sinfo -h -N -o '%T' 2>/dev/null | head -1)" = idle ]; then
    echo "slurm: already up, SLURM_CONF=$DIR/slurm.conf"
    exit 0
fi

need=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || fail "not root and missing ${need[*]}: cannot install SLURM"
    command -v apt-get >/dev/null || fail "no apt-get to install ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed (no package index?)"
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
        || fail "apt-get install ${need[*]} failed"
fi
[ "$(id -u)" = 0 ] || fail "not root: slurmd must run as root"
export PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$DIR"/{state,spool,log,run}
HOST="$(hostname -s)"
read -r CPUS MEM < <(slurmd -C 2>/dev/null | awk '/^NodeName/ {for (i=1;i<=NF;i++) {split($i,a,"="); v[a[1]]=a[2]} print v["CPUs"], v["RealMemory"]}')
[ -n "${CPUS:-}" ] || fail "slurmd -C did not describe this node"
MEM=$(( MEM * 9 / 10 ))
cat > "$DIR/slurm.conf" <<CONF
# one-node SLURM for narrowflow's tests (written by tests/slurm/start.sh)
ClusterName=narrowflow-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=6917
SlurmdPort=6918
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
EnforcePartLimits=ALL
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=2
KillWait=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=02:00:00 State=UP
CONF
echo "SLURM_CONF=$DIR/slurm.conf" > "$DIR/env"
export SLURM_CONF="$DIR/slurm.conf"

# munge: use one that answers, else start ours
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged || fail "munged did not start"
    else
        munged --force || fail "munged did not start"
    fi
    touch "$DIR/run/munged.ours"
    for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.2; done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munged does not answer"
fi

# -c: a clean start (no jobs recovered from an earlier run of this test SLURM)
slurmctld -c -f "$DIR/slurm.conf" || fail "slurmctld did not start (see $DIR/log/slurmctld.log)"
slurmd -f "$DIR/slurm.conf" || fail "slurmd did not start (see $DIR/log/slurmd.log)"
for _ in $(seq 150); do   # up to 30 s for the node to register
    state="$(sinfo -h -N -o '%T' 2>/dev/null | head -1)"
    [ "$state" = idle ] && break
    sleep 0.2
done
[ "$state" = idle ] || fail "node not idle after 30 s (state '${state:-none}'; logs in $DIR/log)"
echo "slurm: up on $HOST ($CPUS CPUs, ${MEM} MB), SLURM_CONF=$DIR/slurm.conf"
