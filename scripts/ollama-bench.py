#!/usr/bin/env python3
"""Measures an ollama server on one model: prefill (prompt eval) tok/s for
prompts of given token counts, batch-1 decode tok/s, and the aggregate
tok/s of N concurrent requests, from the timings in ollama's own replies
(engine time, no HTTP) except the aggregate, which is wall time. Prints one
JSON object: medians under prefill_L / decode / concurrent_N, every sample
under the same key + "_samples".

  scripts/ollama-bench.py --model r42-q8-0 --lengths 512,2048 --decode 128 --threads 2 [--concurrency 8,16]

For --concurrency the server must run with OLLAMA_NUM_PARALLEL >= N, or
ollama queues the requests. ollama stops a stream after 31 identical tokens,
so decode is measured at temperature 1 (over the whole vocabulary).
"""
import argparse, concurrent.futures, json, random, statistics, sys, time, urllib.request

def generate(host, model, prompt, n, threads, temperature, seed, num_ctx):
    body = json.dumps({"model": model, "prompt": prompt, "raw": True, "stream": False,
                       "options": {"num_thread": threads, "temperature": temperature, "num_predict": n,
                                   "num_ctx": num_ctx, "seed": seed, "top_k": 0, "top_p": 1.0}}).encode()
    req = urllib.request.Request(host + "/api/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return json.load(r)

def record(out, key, samples):
    out[key] = statistics.median(samples)
    out[key + "_samples"] = samples

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="http://127.0.0.1:11434")
    ap.add_argument("--model", required=True)
    ap.add_argument("--lengths", default="512,2048")
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--concurrency", default="", help="comma-separated request counts for the aggregate figure")
    ap.add_argument("--concurrent-ctx", type=int, default=512,
                    help="num_ctx per sequence for the concurrent runs (ollama allocates num_ctx x OLLAMA_NUM_PARALLEL)")
    a = ap.parse_args()
    rnd = random.Random(1)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    word = lambda: "".join(rnd.choice(letters[:10]) for _ in range(rnd.randint(2, 5)))
    out = {"model": a.model}
    for L in [int(x) for x in a.lengths.split(",") if x]:
        # Calibrate: how many words make L tokens in this vocabulary.
        probe = generate(a.host, a.model, " ".join(word() for _ in range(L)), 1, a.threads, 1.0, 0, 4096)
        nwords = max(1, round(L * L / probe["prompt_eval_count"]))
        rates = []
        for rep in range(a.reps):
            # A new prompt each time, so ollama's prompt cache cannot help.
            words = [word() for _ in range(nwords)]
            r = generate(a.host, a.model, " ".join(words), 1, a.threads, 1.0, rep, 4096)
            n, d = r["prompt_eval_count"], r["prompt_eval_duration"] / 1e9
            rates.append(n / d)
            print(f"prefill L~{L}: {n} tokens in {d*1000:.0f} ms = {n/d:.1f} tok/s", file=sys.stderr)
        record(out, f"prefill_{L}", rates)
    rates = []
    for rep in range(a.reps):
        r = generate(a.host, a.model, "a", a.decode, a.threads, a.temperature, rep, 4096)
        n, d = r["eval_count"], r["eval_duration"] / 1e9
        rates.append(n / d)
        print(f"decode: {n} tokens in {d*1000:.0f} ms = {n/d:.1f} tok/s", file=sys.stderr)
    record(out, "decode", rates)
    for N in [int(x) for x in a.concurrency.split(",") if x]:
        # Load the model at the concurrent context size first, so the
        # reload is not timed.
        generate(a.host, a.model, "a", 1, a.threads, a.temperature, 0, a.concurrent_ctx)
        rates = []
        for rep in range(a.reps):
            start = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(N) as ex:
                futs = [ex.submit(generate, a.host, a.model, word(), a.decode, a.threads, a.temperature, 100 * rep + i, a.concurrent_ctx)
                        for i in range(N)]
                total = sum(f.result()["eval_count"] for f in futs)
            wall = time.monotonic() - start
            rates.append(total / wall)
            print(f"concurrent {N}: {total} tokens in {wall*1000:.0f} ms = {total/wall:.1f} tok/s", file=sys.stderr)
        record(out, f"concurrent_{N}", rates)
    print(json.dumps(out))

main()
