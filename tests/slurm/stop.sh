#!/usr/bin/env bash
# Stop what tests/slurm/start.sh started: tests/slurm/stop.sh [STATE_DIR]
# Cancels every job left in that SLURM, stops slurmd and slurmctld (by their pid files), and
# munged if start.sh started it. Leaves STATE_DIR's logs in place.
set -uo pipefail
DIR="${1:-${NARROWFLOW_SLURM_DIR:-/tmp/narrowflow-slurm}}"
export PATH="$PATH:/usr/sbin:/sbin"
if [ -f "$DIR/slurm.conf" ] && [ -f "$DIR/run/slurmctld.pid" ]; then
    export SLURM_CONF="$DIR/slurm.conf"
    scancel --full --quiet --user "$(id -un)" 2>/dev/null
    for _ in $(seq 100); do     # up to 20 s for the cancelled jobs to leave
        [ -z "$(squeue -h 2>/dev/null)" ] && break
        sleep 0.2
    done
fi
stop_pid() {   # stop_pid PIDFILE: SIGTERM, then SIGKILL after 10 s
    [ -f "$1" ] || return 0
    local pid; pid="$(cat "$1")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$1"
}
stop_pid "$DIR/run/slurmd.pid"
stop_pid "$DIR/run/slurmctld.pid"
if [ -f "$DIR/run/munged.ours" ]; then
    [ -f /run/munge/munged.pid ] && stop_pid /run/munge/munged.pid
    rm -f "$DIR/run/munged.ours"
fi
exit 0
