#!/usr/bin/env bash
# Decode and prefill scaling with threads, semantic against ollama, on one GGUF
# file, in one run: for each thread count, semantic-bench's cold 512-token
# TTFT and batch-1 greedy decode, and ollama's prompt-eval and eval rates
# (scripts/ollama-bench.py). Built for the 16-core device machine, where the
# binaries are carried in (BIN) and the file is generated there.
#
#   BIN=.devbench THREADS="2 4 8 16" SHAPE=110M TYPE=Q4_K_M scripts/bench-scaling.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/semantic-scaling}
BIN=${BIN:-bin}
THREADS=${THREADS:-"2 4 8 16"}
SHAPE=${SHAPE:-110M}
TYPE=${TYPE:-Q4_K_M}
OLLAMA=${OLLAMA:-$BIN/ollama}
mkdir -p "$DIR"
f="$DIR/r$SHAPE-$TYPE.gguf"
[ -f "$f" ] || "$BIN/semantic-gguf" random --shape "$SHAPE" --type "$TYPE" "$f"
name=$(echo "r$SHAPE-$TYPE" | tr 'A-Z_' 'a-z-')
OLLAMA_HOST=127.0.0.1:11434 OLLAMA_MODELS="$DIR/ollama" nohup "$OLLAMA" serve >"$DIR/ollama.log" 2>&1 &
opid=$!
trap 'kill $opid 2>/dev/null || true' EXIT
for i in $(seq 1 30); do curl -sf http://127.0.0.1:11434/api/version >/dev/null && break; sleep 0.5; done
printf 'FROM %s\nTEMPLATE {{ .Prompt }}\n' "$f" >"$DIR/Modelfile"
OLLAMA_HOST=127.0.0.1:11434 "$OLLAMA" create "$name" -f "$DIR/Modelfile" >/dev/null 2>&1
echo "| threads | semantic TTFT 512 (ms) | semantic decode tok/s | ollama | "
for t in $THREADS; do
  out=$("$BIN/semantic-bench" --model "gguf:$f" --workers "$t" --lengths 512 --reps 3 --batches 1 --decode-tokens 128 2>&1)
  c512=$(echo "$out" | awk '/^\| 512 \|/ {print $4}')
  dec=$(echo "$out" | awk '/^\| 1 \|/ {print $6}')
  o=$(scripts/ollama-bench.py --model "$name" --lengths 512 --decode 128 --threads "$t" --reps 3 2>/dev/null || echo failed)
  echo "| $t | $c512 | $dec | $o |"
done
