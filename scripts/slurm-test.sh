#!/usr/bin/env bash
# End-to-end test of the Slurm executors against a real Slurm, on this
# machine only: installs Debian's slurm-wlm and munge (if missing), starts
# munged, slurmctld and slurmd on 127.0.0.1 with a config written here (one
# node, two CPUs, no cgroups), then
#   1. runs a tiny study with the local executor (the reference),
#   2. submits the same study with --executor slurm, cancels one training
#      segment while it runs (scancel), re-submits, and checks that every
#      run finished with the local run's branch-point checkpoints, final
#      weights and final losses, bit for bit (same thread count on CPU);
#   3. scores documents as a 4-task array job (one task cancelled before it
#      starts), re-submits, and checks that the merged output holds every
#      input document exactly once, as the unsharded local scoring does.
# The daemons are stopped on exit. Run as root on Debian (CI does):
#   bash scripts/slurm-test.sh
# Idempotent: everything lives in $SLURM_TEST_DIR (default
# /tmp/frugal-slurm-test), removed at the start. FRUGAL_BIN picks a binary
# (default: `cargo build -p frugal`, debug).
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
T=${SLURM_TEST_DIR:-/tmp/frugal-slurm-test}
say() { echo "== slurm-test [$(($(date +%s) - START)) s] $*"; }
fail() { echo "slurm-test FAILED: $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then fail "run as root (the daemons are started here)"; fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

# Stops a daemon of an earlier run (or of this one) by its pid file.
stop_pidfile() {
    local f=$1 pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}
stop_all() {
    stop_pidfile "$T/slurmd.pid"
    stop_pidfile "$T/slurmctld.pid"
    stop_pidfile "$T/munged.pid"
}
stop_all
rm -rf "$T"
mkdir -p "$T"/{state,spool,munge}
chmod 755 "$T" "$T/munge"
trap 'status=$?; stop_all; say "daemons stopped"; exit $status' EXIT

# munge: its own key and socket, so a system munged is left alone.
mungekey --create --keyfile="$T/munge/munge.key"
munged -S "$T/munge/socket" --key-file="$T/munge/munge.key" --log-file="$T/munged.log" \
    --pid-file="$T/munged.pid" --seed-file="$T/munge/seed"
export SLURM_CONF=$T/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=frugaltest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/socket
# Bind to the node's address (loopback) instead of every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld
slurmd -N localhost
for _ in $(seq 100); do
    [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break
    sleep 0.2
done
[ "$(sinfo -h -o %T)" = idle ] || fail "the node did not come up: $(sinfo 2>&1; tail -5 "$T"/slurm*.log)"
say "cluster up: $(sinfo -h -o '%P %D %c %T')"

if [ -z "${FRUGAL_BIN:-}" ]; then
    cargo build -q -p frugal
    FRUGAL_BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug/frugal
fi
F=$(realpath "$FRUGAL_BIN")
fr() { "$F" --threads 1 "$@"; }

# Our jobs still queued or running.
active() { squeue --me -h -r -o %i | wc -l; }
wait_idle() {
    local limit=$1
    for _ in $(seq $((limit * 5))); do
        [ "$(active)" = 0 ] && return 0
        sleep 0.2
    done
    squeue
    fail "jobs still queued after $limit s"
}

# Data, as crates/cli/tests/common does: a tokenizer and a dataset from Hamlet.
FIX=crates/data/tests/fixtures
fr tokenizer train --vocab 512 --input "$FIX" --out "$T/tok.json" >/dev/null
fr data prepare --val-fraction 0.2 --input "$FIX" --tokenizer "$T/tok.json" --out "$T/ds" >/dev/null
cat >"$T/study.toml" <<EOF
families = ["wsd", "cosine"]
[[size]]
name = "a"
d_model = 16
n_layers = 1
n_heads = 2
[[size]]
name = "b"
preset = "nano"
[budgets]
tokens = [1280, 2560, 20480]
[wsd]
lr = 2e-3
swa = { interval = 2, horizon = 8 }
[cosine]
lr = 4e-3
[base]
data = { dataset = "$T/ds" }
train = { seq_len = 32, batch_size = 4, log_every = 5 }
schedule = { warmup_steps = 2 }
eval = { every = 10, batches = 2 }
checkpoint = { every = 5 }
EOF
study() { local cmd=$1 out=$2; shift 2; fr study "$cmd" --spec "$T/study.toml" --out "$out" "$@"; }

say "local reference study"
study run "$T/local" --jobs 2 --threads-per-job 1 2>"$T/local-run.log"
NJOBS=$(study plan "$T/local" | grep -c '^[ab]-')

say "slurm study: dry run, then submit"
study run "$T/slurm" --executor slurm --threads-per-job 1 --dry-run >/dev/null
[ "$(ls "$T/slurm/slurm"/*.sbatch | wc -l)" -gt "$NJOBS" ] || fail "dry run wrote too few scripts"
[ ! -e "$T/slurm/slurm/jobs.json" ] && [ "$(active)" = 0 ] || fail "the dry run submitted jobs"
study run "$T/slurm" --executor slurm --threads-per-job 1 >"$T/submit1.log"
study status "$T/slurm" >"$T/status0.txt"
grep -Eq 'pending|running' "$T/status0.txt" || fail "status shows nothing queued: $(cat "$T/status0.txt")"

# Cancel the long segment (steps 16 to 128) of the nano constant run once it
# has trained past step 16 (it resumes from its last checkpoint when
# re-submitted); 100+ steps remain, so the cancel cannot come too late.
VICTIM=b-const.to-128
VID=$(sed -n "s/^submitted $VICTIM as job //p" "$T/submit1.log")
[ -n "$VID" ] || fail "$VICTIM was not submitted: $(cat "$T/submit1.log")"
progress() { { tail -n1 "$T/slurm/runs/b-const/metrics.jsonl" 2>/dev/null || true; } | sed -n 's/.*"step":\([0-9]*\).*/\1/p'; }
for _ in $(seq 3000); do
    st=$(squeue -h -t all -j "$VID" -o %T 2>/dev/null || true)
    p=$(progress)
    [ "$st" = RUNNING ] && [ "${p:-0}" -gt 16 ] && break
    [ -z "$st" ] || [ "$st" = COMPLETED ] && fail "$VICTIM ended before it could be cancelled"
    sleep 0.05
done
[ -e "$T/slurm/runs/b-const/checkpoints/step-0000128/state.json" ] && fail "$VICTIM finished before the cancel"
scancel "$VID"
say "cancelled $VICTIM (job $VID) at step $(progress)"
wait_idle 300
study status "$T/slurm" >"$T/status1.txt"
grep -q '^b-const .*failed' "$T/status1.txt" || fail "status after the cancel: $(cat "$T/status1.txt")"
grep -Eq ' done ' "$T/status1.txt" || fail "nothing done before the cancel"
DONE1=$(grep -c ' done ' "$T/status1.txt")

say "re-submitting the study"
study run "$T/slurm" --executor slurm --threads-per-job 1 >"$T/submit2.log" 2>&1
grep -q "^submitted $VICTIM as job" "$T/submit2.log" || fail "the cancelled segment was not resubmitted"
grep -q "^submitted b-const.to-16 " "$T/submit2.log" && fail "a finished segment was resubmitted"
NSUB2=$(grep -c '^submitted ' "$T/submit2.log")
wait_idle 600
study status "$T/slurm" >"$T/status2.txt"
grep -q "^$NJOBS jobs: $NJOBS done$" "$T/status2.txt" || fail "not all done: $(cat "$T/status2.txt")"
# A third submission has nothing to do.
study run "$T/slurm" --executor slurm --threads-per-job 1 >"$T/submit3.log" 2>&1
grep -q "study: 0 jobs submitted, 0 queued or running, " "$T/submit3.log" || fail "$(cat "$T/submit3.log")"

say "comparing with the local executor"
for run in "$T/local/runs"/*; do
    id=$(basename "$run")
    s=$T/slurm/runs/$id
    last=$(ls -d "$run"/checkpoints/step-* | tail -n1 | xargs basename)
    cmp -s "$run/checkpoints/$last/model.safetensors" "$s/checkpoints/$last/model.safetensors" \
        || fail "$id: final weights differ"
    [ "$(tail -n1 "$run/metrics.jsonl")" = "$(tail -n1 "$s/metrics.jsonl")" ] || fail "$id: final losses differ"
    if [ -f "$run/branch.json" ]; then
        b() { grep -E '"(branch_step|cooldown_steps)"' "$1/branch.json"; }
        [ "$(b "$run")" = "$(b "$s")" ] || fail "$id: branch points differ"
    fi
done
# The constant runs' checkpoints at the branch points (written by segments).
for c in "$T"/local/runs/*-const/checkpoints/step-*; do
    rel=${c#"$T"/local/}
    cmp -s "$c/model.safetensors" "$T/slurm/$rel/model.safetensors" || fail "$rel differs"
    cmp -s "$c/optimizer.safetensors" "$T/slurm/$rel/optimizer.safetensors" 2>/dev/null \
        || [ ! -e "$c/optimizer.safetensors" ] || fail "$rel optimizer state differs"
done
say "study ok: $NJOBS runs equal to the local executor's; $DONE1 were done before the cancel, $NSUB2 jobs resubmitted"

say "ProLong: a tiny scorer"
cat >"$T/scorer.toml" <<EOF
[model]
preset = "nano"
[data]
dataset = "$T/ds"
[train]
seq_len = 32
batch_size = 4
steps = 20
lr = 3e-3
[schedule]
kind = "wsd"
warmup_steps = 2
[checkpoint]
every = 20
EOF
fr train --config "$T/scorer.toml" --out "$T/scorer" --quiet >/dev/null 2>&1
MODEL=$T/scorer/checkpoints/step-0000020
mkdir -p "$T/docs"
split -n l/23 -d -a 2 --additional-suffix=.txt "$FIX/hamlet_acts_1-3.txt" "$T/docs/scene-"
# Records that become error records (too short, invalid JSON): still one each.
printf '%s\n' '{"text": "too short"}' '{broken' >"$T/extra.jsonl"
NDOCS=$(( $(ls "$T/docs"/*.txt | wc -l) + 2 ))
score() { fr prolong score --model "$MODEL" --tokenizer "$T/tok.json" --input "$T/docs" "$T/extra.jsonl" \
    --chunk-size 16 --window 256 --sample-pairs 10 "$@"; }
score --output "$T/prolong-local.jsonl" >/dev/null

say "ProLong: 4-shard array job (held), one task cancelled"
mkdir -p "$T/prolong"
score --output "$T/prolong/scores.jsonl" --executor slurm --shards 4 --sbatch-arg=--hold >"$T/psubmit1.log"
AID=$(sed -n 's/^submitted shards 0,1,2,3 of 4 as array job //p' "$T/psubmit1.log")
[ -n "$AID" ] || fail "no array job: $(cat "$T/psubmit1.log")"
MID=$(sed -n 's/^submitted the merge as job \([0-9]*\);.*/\1/p' "$T/psubmit1.log")
scancel "${AID}_1"
scontrol release "$AID" 2>/dev/null || true
scontrol release "$MID" 2>/dev/null || true
wait_idle 300
[ -e "$T/prolong/scores.jsonl" ] && fail "merged although shard 1 was cancelled"
"$F" prolong merge --input "$T/docs" "$T/extra.jsonl" --output "$T/prolong/scores.jsonl" --shards 4 2>"$T/merge-err.txt" \
    && fail "merge accepted a missing shard"
grep -q "shard 1 has no output" "$T/merge-err.txt" || fail "merge error: $(cat "$T/merge-err.txt")"
score --output "$T/prolong/scores.jsonl" --executor slurm --shards 4 >"$T/psubmit2.log"
grep -q '^submitted shards 1 of 4 ' "$T/psubmit2.log" || fail "resubmission: $(cat "$T/psubmit2.log")"
wait_idle 300
[ -s "$T/prolong/scores.jsonl" ] || fail "the merge job wrote nothing: $(cat "$T"/prolong/scores.slurm/logs/merge.log)"
ids() { sed -n 's/^{"id":"\([^"]*\)".*/\1/p' "$1" | sort; }
[ "$(ids "$T/prolong/scores.jsonl" | wc -l)" = "$NDOCS" ] || fail "merged $(wc -l <"$T/prolong/scores.jsonl") records for $NDOCS documents"
[ "$(ids "$T/prolong/scores.jsonl" | uniq -d | wc -l)" = 0 ] || fail "a document was scored twice"
[ "$(ids "$T/prolong/scores.jsonl")" = "$(ids "$T/prolong-local.jsonl")" ] || fail "merged ids differ from the local scoring"
# Scores do not depend on which documents share a batch: same records.
cmp -s <(sort "$T/prolong/scores.jsonl") <(sort "$T/prolong-local.jsonl") \
    || fail "merged records differ from the unsharded run's"
say "ProLong ok: $NDOCS documents each scored exactly once, records identical to the unsharded run"

say "all checks passed in $(($(date +%s) - START)) s"
