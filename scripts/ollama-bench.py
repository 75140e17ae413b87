#!/usr/bin/env python3
"""Measures an ollama server on one model: prefill (prompt eval) tok/s for
prompts of given token counts and batch-1 decode tok/s, from the timings in
ollama's own replies (engine time, no HTTP). Medians of --reps runs.

  scripts/ollama-bench.py --model r42-q8-0 --lengths 512,2048 --decode 128 --threads 2
"""
import argparse, json, random, statistics, sys, urllib.request

def generate(host, model, prompt, n, threads, temperature, seed):
    body = json.dumps({"model": model, "prompt": prompt, "raw": True, "stream": False,
                       "options": {"num_thread": threads, "temperature": temperature, "num_predict": n,
                                   "num_ctx": 4096, "seed": seed, "top_k": 0, "top_p": 1.0}}).encode()
    req = urllib.request.Request(host + "/api/generate", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="http://127.0.0.1:11434")
    ap.add_argument("--model", required=True)
    ap.add_argument("--lengths", default="512,2048")
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    rnd = random.Random(1)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    word = lambda: "".join(rnd.choice(letters[:10]) for _ in range(rnd.randint(2, 5)))
    out = {"model": a.model}
    for L in [int(x) for x in a.lengths.split(",") if x]:
        # Calibrate: how many words make L tokens in this vocabulary.
        probe = generate(a.host, a.model, " ".join(word() for _ in range(L)), 1, a.threads, 1.0, 0)
        nwords = max(1, round(L * L / probe["prompt_eval_count"]))
        rates = []
        for rep in range(a.reps):
            # A new prompt each time, so ollama's prompt cache cannot help.
            words = [word() for _ in range(nwords)]
            r = generate(a.host, a.model, " ".join(words), 1, a.threads, 1.0, rep)
            n, d = r["prompt_eval_count"], r["prompt_eval_duration"] / 1e9
            rates.append(n / d)
            print(f"prefill L~{L}: {n} tokens in {d*1000:.0f} ms = {n/d:.1f} tok/s", file=sys.stderr)
        out[f"prefill_{L}"] = statistics.median(rates)
    rates = []
    for rep in range(a.reps):
        r = generate(a.host, a.model, "a", a.decode, a.threads, 1.0, rep)
        n, d = r["eval_count"], r["eval_duration"] / 1e9
        rates.append(n / d)
        print(f"decode: {n} tokens in {d*1000:.0f} ms = {n/d:.1f} tok/s", file=sys.stderr)
    out["decode"] = statistics.median(rates)
    print(json.dumps(out))

main()
