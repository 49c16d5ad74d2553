#!/usr/bin/env bash
# A real single-host SLURM cluster for tests/test_slurm.py: munge, slurmctld and two slurmd ("nodes" n1 and n2
# on this machine), a "debug" partition and a higher-priority "urgent" one that preempts it (requeue).
#   tests/slurm/local_cluster.sh up      # as root; Debian: apt-get install slurm-wlm munge
#   tests/slurm/local_cluster.sh down    # stops the daemons, restores /etc/hosts
# State and logs live in $SLURM_TEST_DIR (default /tmp/trainer-slurm); job ends are in its jobcomp.log.
set -euo pipefail

DIR=${SLURM_TEST_DIR:-/tmp/trainer-slurm}
CONF=/etc/slurm/slurm.conf
HOSTS_MARK="# trainer local_cluster.sh"

up() {
    command -v slurmctld >/dev/null || { echo "local_cluster.sh: slurm is not installed (apt-get install slurm-wlm munge)" >&2; exit 2; }
    [ "$(id -u)" = 0 ] || { echo "local_cluster.sh: run as root" >&2; exit 2; }
    down quiet
    mkdir -p "$DIR"/{state,spool/n1,spool/n2,log} /run/munge /etc/slurm
    chown -R slurm:slurm "$DIR"
    chown munge:munge /run/munge
    [ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    # the emulated nodes' names must resolve, for --nodes=2 jobs
    grep -q "$HOSTS_MARK" /etc/hosts || echo "127.0.0.1 n1 n2 $HOSTS_MARK" >>/etc/hosts
    host=$(hostname)
    cat >"$CONF" <<EOF
ClusterName=trainertest
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
KillWait=30
MinJobAge=600
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 CPUs=2 RealMemory=8000
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 CPUs=2 RealMemory=8000
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=n1,n2 MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
    touch "$DIR/jobcomp.log"
    chown slurm:slurm "$DIR/jobcomp.log"
    slurmctld
    slurmd -N n1
    slurmd -N n2
    for _ in $(seq 60); do
        if sinfo -h -o '%T' 2>/dev/null | grep -q idle && [ "$(sinfo -h -N -t idle -o %N | sort -u | wc -l)" = 2 ]; then
            echo "local_cluster.sh: up (nodes n1, n2; partitions debug, urgent; state in $DIR)"
            return 0
        fi
        sleep 1
    done
    echo "local_cluster.sh: the nodes did not come up; see $DIR/log" >&2
    exit 1
}

down() {
    for pidfile in "$DIR"/slurmd-*.pid "$DIR"/slurmctld.pid; do
        [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    pkill -x slurmstepd 2>/dev/null || true
    pkill -x munged 2>/dev/null || true
    sed -i "/$HOSTS_MARK/d" /etc/hosts 2>/dev/null || true
    sleep 1
    [ "${1:-}" = quiet ] || echo "local_cluster.sh: down"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: tests/slurm/local_cluster.sh up|down" >&2; exit 2 ;;
esac
