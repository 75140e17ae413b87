#!/usr/bin/env bash
# Side-by-side benchmark of semantic and ollama on the same GGUF files
# (random weights of llama2.c's 42M and 110M shapes, 32k vocabulary, written by
# bin/semantic-gguf), same machine, same thread count, in one run.
#
#   OLLAMA=/path/to/ollama THREADS=2 scripts/bench-peers.sh [DIR]
#
# Prints one line per model: prefill tok/s (cold, 512 and 2048-token prompts),
# batch-1 decode tok/s, peak RSS, for both engines. See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/semantic-peers}
THREADS=${THREADS:-2}
OLLAMA=${OLLAMA:-ollama}
SHAPES=${SHAPES:-"42M 110M"}
TYPES=${TYPES:-"Q8_0 Q4_0 F32"}
mkdir -p "$DIR"
make build >/dev/null
go build -o bin/semantic-bench ./services/scheduler/cmd/semantic-bench

peak_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

if ! curl -sf http://127.0.0.1:11434/api/version >/dev/null; then
  OLLAMA_HOST=127.0.0.1:11434 OLLAMA_MODELS="$DIR/ollama" nohup "$OLLAMA" serve >"$DIR/ollama.log" 2>&1 &
  sleep 3
fi

for shape in $SHAPES; do
  for t in $TYPES; do
    f="$DIR/r$shape-$t.gguf"
    [ -f "$f" ] || bin/semantic-gguf random --shape "$shape" --type "$t" "$f"
    name=$(echo "r$shape-$t" | tr 'A-Z_' 'a-z-')
    printf 'FROM %s\nTEMPLATE {{ .Prompt }}\n' "$f" >"$DIR/Modelfile"
    OLLAMA_HOST=127.0.0.1:11434 "$OLLAMA" create "$name" -f "$DIR/Modelfile" >/dev/null 2>&1
    # semantic: cold TTFT of 512 and 2048 token ids, batch-1 greedy decode of 128 tokens.
    out=$(bin/semantic-bench --model "gguf:$f" --workers "$THREADS" --lengths 512,2048 --reps 3 --batches 1 --decode-tokens 128 2>&1)
    c512=$(echo "$out" | awk '/^\| 512 \|/ {print $4}')
    c2048=$(echo "$out" | awk '/^\| 2048 \|/ {print $4}')
    dec=$(echo "$out" | awk '/^\| 1 \|/ {print $6}')
    # semantic peak RSS: a scheduler serving one 2048-token prompt.
    rm -rf "$DIR/data"
    bin/scheduler --model "gguf:$f" --workers "$THREADS" --data-dir "$DIR/data" --listen 127.0.0.1:50099 --metrics-listen '' --http-listen '' >"$DIR/sched.log" 2>&1 &
    pid=$!
    for i in $(seq 1 60); do .tools/bin/grpcurl -plaintext 127.0.0.1:50099 grpc.health.v1.Health/Check >/dev/null 2>&1 && break; sleep 0.5; done
    ids=$(python3 -c 'import random; r=random.Random(1); print(",".join(str(r.randrange(3,32000)) for _ in range(2048)))')
    .tools/bin/grpcurl -plaintext -d "{\"agent_id\":\"rss\",\"prompt_token_ids\":[1,$ids],\"max_tokens\":16}" 127.0.0.1:50099 semantic.scheduler.v1.SchedulerService/Generate >/dev/null
    rss=$(( $(peak_kb $pid) / 1024 ))
    kill $pid; wait $pid 2>/dev/null || true
    # ollama: the same figures from its own timings.
    o=$(scripts/ollama-bench.py --model "$name" --lengths 512,2048 --decode 128 --threads "$THREADS" --reps 3 2>/dev/null)
    opid=$(pgrep -f "ollama runner" | head -1 || true)
    orss=$([ -n "$opid" ] && echo $(( $(peak_kb "$opid") / 1024 )) || echo "?")
    size=$(( $(stat -c %s "$f") / 1048576 ))
    echo "r$shape $t file ${size}MB | semantic: cold TTFT 512 ${c512} ms, 2048 ${c2048} ms, decode ${dec} tok/s, peak RSS ${rss} MB | ollama: $o, runner peak RSS ${orss} MB"
  done
done
