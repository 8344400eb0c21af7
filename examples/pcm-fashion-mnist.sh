#!/usr/bin/env bash
# shellcheck disable=SC2086  # the *_ARGS are lists of options, split on purpose
# The PCM science run of docs/pcm.md: a teacher on Fashion-MNIST, PCM students
# with M = 1, 2, 4 phases, the LCM baseline on the same budget, and FID of all
# of them at 1, 2, 4, 8 and 16 steps (deterministic and stochastic PCM sampling).
#
#   examples/pcm-fashion-mnist.sh [OUT_DIR] [FRUGAL_BIN]
#
# OUT_DIR defaults to runs/pcm, FRUGAL_BIN to target/release/frugal. Every
# step resumes: re-run the script after an interruption and finished work is
# skipped (the evaluation per table cell). Single-threaded jobs share a 2-core
# machine: the students distil two at a time while the teacher's own cells
# (its reference samples, the costliest, and its rows) are evaluated beside
# them, then two evaluations split the students, and a last call, which finds
# every cell done, writes the whole table. Set DEVICE=cuda to use a GPU (a
# frugal built with --features cuda). Budgets: TEACHER_STEPS (20000), DISTILL_STEPS (4000), SAMPLES (10000);
# STOCHASTIC_R (0.5): the r values of the extra pcm-stochastic rows;
# TEACHER_ARGS adds teacher options, e.g. TEACHER_ARGS="--channels 16 --batch 32";
# DISTILL_ARGS adds options to every student, e.g. DISTILL_ARGS="--batch 32 --lr 1e-4";
# EVAL_ARGS adds eval options (a smoke run: EVAL_ARGS="--classifier-steps 20 --reference-steps 2").
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/pcm}
bin=${2:-target/release/frugal}
dev=${DEVICE:-cpu}
teacher_steps=${TEACHER_STEPS:-20000}
distill_steps=${DISTILL_STEPS:-4000}
samples=${SAMPLES:-10000}
stochastic_r=${STOCHASTIC_R:-0.5}
teacher_args=${TEACHER_ARGS:-}
distill_args=${DISTILL_ARGS:-}
eval_args=${EVAL_ARGS:-}
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p frugal" >&2; exit 1; }
f() { "$bin" --threads "${threads:-1}" pcm "$@" --device "$dev"; }

f teacher --data fashion-mnist --out "$out/teacher" --steps "$teacher_steps" $teacher_args --quiet
ev() {
    f eval --models "$@" --steps 1,2,4,8,16 --samples "$samples" --stochastic-r "$stochastic_r" \
        --out "$out/eval" $eval_args --quiet
}
# The teacher's cells also train the classifier, which the student
# evaluations below (started after it) read from $out/eval.
ev "$out/teacher" &
t=$!
# PCM with 1 and 2 phases side by side, then 4 phases beside LCM (same budget).
f distill --teacher "$out/teacher" --phases 1 --out "$out/pcm1" --steps "$distill_steps" $distill_args --quiet &
p=$!
f distill --teacher "$out/teacher" --phases 2 --out "$out/pcm2" --steps "$distill_steps" $distill_args --quiet
wait $p  # fails the script if the background job failed
f distill --teacher "$out/teacher" --phases 4 --out "$out/pcm4" --steps "$distill_steps" $distill_args --quiet &
p=$!
f distill --teacher "$out/teacher" --method lcm --out "$out/lcm" --steps "$distill_steps" $distill_args --quiet
wait $p
wait $t  # the teacher's reference, which the students' cells are scored against
ev "$out/pcm1" "$out/pcm2" &
p=$!
ev "$out/pcm4" "$out/lcm"
wait $p
ev "$out/teacher" "$out/pcm1" "$out/pcm2" "$out/pcm4" "$out/lcm"  # every cell is done: the table
echo "table: $out/eval/results.md, grids: $out/eval/grids/"
