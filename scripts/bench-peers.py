#!/usr/bin/env python3
"""Side by side: semantic, ollama (llama.cpp) and llama2.c's run.c on the same
model files, the same machine and the same thread count, in one run
(`make bench-peers`; issue #14, docs/performance.md).

  scripts/bench-peers.py [--dir /tmp/semantic-peers] [--threads 2] [--shapes 42M,110M]
                         [--types F32,Q8_0,Q4_K_M] [--reps 3] [--concurrency 8,16]

Models are random weights of llama2.c's shapes with a 32,000-piece vocabulary,
written by the project's own writers (bin/semantic-gguf): for each shape a
llama2.c float32 checkpoint with its tokenizer.bin (run.c and semantic read it;
ollama reads the F32 GGUF of the same weights) and one GGUF file per type
(semantic and ollama). Engines alternate model by model.

Peers: run.c is built from ../shared/peers/llama2.c (gcc -Ofast -fopenmp
-march=native); ollama is $OLLAMA, or `ollama` on PATH, or DIR/bin/ollama, or
built there with `go install github.com/ollama/ollama@v0.17.4` as
../shared/peers/README.md says (about 10 minutes; needs g++,
nlohmann-json3-dev and libstb-dev). A peer that cannot be built is skipped,
and the table says so.

Figures, each the median of --reps runs with min-max:
  prefill 512 / 2048   tokens/s of a cold prompt (semantic: tokens / time to
                       first token through the real scheduler over gRPC;
                       ollama: prompt_eval_count / prompt_eval_duration)
  decode t=1 / greedy  batch-1 tokens/s after the first token (semantic:
                       per stream from the client; ollama: eval_count /
                       eval_duration; run.c: its "achieved tok/s"); ollama
                       only at temperature 1 (it stops a stream after 31
                       identical tokens)
  N concurrent, t=1    aggregate tokens/s of N requests x --decode tokens
                       sent at once (wall time; ollama with
                       OLLAMA_NUM_PARALLEL=N)
  peak RSS             MB: the scheduler process (embedded pool included)
                       after a 2048-token prompt; ollama's runner after its
                       runs; run.c's maximum resident set
"""
import argparse, json, os, random, re, shutil, signal, statistics, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SEMANTIC_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
OLLAMA_VERSION = "v0.17.4"
OLLAMA_HOST = "127.0.0.1:11434"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, env=None, check=True, **kw):
    log("+", " ".join(cmd))
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, check=check, text=True, capture_output=True, **kw)


def build_semantic():
    subprocess.run(["make", "build"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["go", "build", "-o", "bin/semantic-bench", "./services/scheduler/cmd/semantic-bench"], cwd=ROOT, check=True)
    subprocess.run(["make", "tools"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def build_runc(d):
    src = os.path.join(SHARED, "peers", "llama2.c", "run.c")
    out = os.path.join(d, "bin", "runomp")
    if not os.path.exists(src):
        return None, f"run.c skipped: {src} not found"
    try:
        run(["gcc", "-Ofast", "-fopenmp", "-march=native", src, "-lm", "-o", out])
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        return None, f"run.c skipped: build failed ({getattr(e, 'stderr', e)})"
    return out, None


def find_ollama(d):
    for p in [os.environ.get("OLLAMA"), shutil.which("ollama"), os.path.join(d, "bin", "ollama")]:
        if p and os.path.exists(p):
            return p, None
    flags = "-O3 -march=native"
    try:
        log(f"building ollama {OLLAMA_VERSION} (about 10 minutes on 2 cores)")
        run(["go", "install", f"github.com/ollama/ollama@{OLLAMA_VERSION}"], env={
            "GOFLAGS": "-buildvcs=false", "CGO_ENABLED": "1", "GOBIN": os.path.join(d, "bin"),
            "CGO_CPPFLAGS": "-I" + os.path.join(SHARED, "peers", "ollama-build"), "CGO_CFLAGS": flags, "CGO_CXXFLAGS": flags})
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        tail = (getattr(e, "stderr", "") or str(e)).strip().splitlines()[-3:]
        return None, "ollama skipped: build failed (needs g++, nlohmann-json3-dev, libstb-dev): " + " | ".join(tail)
    return os.path.join(d, "bin", "ollama"), None


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    return (statistics.median(xs), min(xs), max(xs))


def fmt(s, digits=0):
    if s is None:
        return "—"
    m, lo, hi = s
    if lo == hi:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def ratio(a, b):
    return f"**{a[0] / b[0]:.2f}x**" if a and b and b[0] > 0 else "—"


def peak_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# semantic-bench prints Markdown tables; these read the cells used here.
TTFT_ROW = re.compile(r"^\| (\d+) \| ([\d.]+) ms \|")
TP_ROW = re.compile(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| [^|]+ \| ([\d.]+) \|$")


def semantic_bench(model, threads, args):
    out = run([os.path.join(ROOT, "bin", "semantic-bench"), "--model", model, "--workers", str(threads)] + args).stdout
    ttft, tp = {}, {}
    for line in out.splitlines():
        if m := TTFT_ROW.match(line):
            ttft[int(m[1])] = float(m[2]) / 1000
        elif m := TP_ROW.match(line):
            tp[int(m[1])] = (float(m[2]), float(m[4]))
    return ttft, tp


def semantic(model, threads, reps, conc, decode):
    r = {}
    for _ in range(reps):
        ttft, tp = semantic_bench(model, threads, ["--lengths", "512,2048", "--reps", "1", "--batches", ",".join(map(str, [1] + conc)),
                                                   "--decode-tokens", str(decode), "--prompt-tokens", "8", "--temperature", "1", "--skip-one-by-one"])
        for L, s in ttft.items():
            r.setdefault(f"prefill {L}", []).append(L / s)
        r.setdefault("decode t=1", []).append(tp[1][1])
        for n in conc:
            r.setdefault(f"{n} concurrent, t=1", []).append(tp[n][0])
        _, tp = semantic_bench(model, threads, ["--skip-ttft", "--batches", ",".join(map(str, [1] + conc)), "--decode-tokens", str(decode),
                                                "--prompt-tokens", "8", "--temperature", "0", "--skip-one-by-one"])
        r.setdefault("decode greedy", []).append(tp[1][1])
        for n in conc:
            r.setdefault(f"{n} concurrent, greedy", []).append(tp[n][0])
    r["peak RSS MB"] = [semantic_rss(model, threads)]
    return {k: stats(v) for k, v in r.items()}


def semantic_rss(model, threads):
    data = os.path.join(ARGS.dir, "data")
    shutil.rmtree(data, ignore_errors=True)
    addr = "127.0.0.1:50099"
    p = subprocess.Popen([os.path.join(ROOT, "bin", "scheduler"), "--model", model, "--workers", str(threads), "--data-dir", data,
                          "--listen", addr, "--metrics-listen", "", "--http-listen", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    grpcurl = os.path.join(ROOT, ".tools", "bin", "grpcurl")
    try:
        for _ in range(120):
            if subprocess.run([grpcurl, "-plaintext", addr, "grpc.health.v1.Health/Check"], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        rnd = random.Random(1)
        ids = [1] + [rnd.randrange(3, 32000) for _ in range(2048)]
        body = json.dumps({"agent_id": "rss", "prompt_token_ids": ids, "max_tokens": 16})
        subprocess.run([grpcurl, "-plaintext", "-d", "@", addr, "semantic.scheduler.v1.SchedulerService/Generate"],
                       input=body, text=True, capture_output=True, check=True)
        return peak_mb(p.pid)
    finally:
        p.terminate()
        p.wait()


def runc(binary, ckpt, threads, reps, steps):
    r = {}
    for rep in range(reps):
        for key, flags in [("decode t=1", ["-t", "1.0", "-p", "1.0", "-s", str(rep + 1)]), ("decode greedy", ["-t", "0"])]:
            p = run(["/usr/bin/time", "-f", "maxrss %M", binary, ckpt, "-z", ckpt + ".tokenizer", "-n", str(steps), "-i", ""] + flags,
                    env={"OMP_NUM_THREADS": str(threads)})
            r.setdefault(key, []).append(float(re.search(r"achieved tok/s: ([\d.]+)", p.stderr)[1]))
            r.setdefault("peak RSS MB", []).append(int(re.search(r"maxrss (\d+)", p.stderr)[1]) / 1024)
    r["peak RSS MB"] = [max(r["peak RSS MB"])]
    return {k: stats(v) for k, v in r.items()}


class Ollama:
    """An ollama server, started per phase: with OLLAMA_NUM_PARALLEL=1 for the
    prefill, decode and peak-RSS figures (ollama sizes its KV cache as num_ctx x
    parallel sequences, so a server started for 16 would hold 16 contexts' KV),
    then with OLLAMA_NUM_PARALLEL=N for the concurrent figures."""

    def __init__(self, binary, d):
        self.binary, self.dir, self.p = binary, d, None

    def start(self, parallel):
        env = {**os.environ, "OLLAMA_HOST": OLLAMA_HOST, "OLLAMA_MODELS": os.path.join(self.dir, "ollama"), "OLLAMA_NUM_PARALLEL": str(parallel)}
        self.log = open(os.path.join(self.dir, "ollama.log"), "a")
        self.p = subprocess.Popen([self.binary, "serve"], env=env, stdout=self.log, stderr=self.log, start_new_session=True)
        for _ in range(60):
            try:
                urllib.request.urlopen(f"http://{OLLAMA_HOST}/api/version", timeout=1)
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("ollama serve did not start; see " + self.log.name)

    def stop(self):
        if self.p:
            os.killpg(self.p.pid, signal.SIGTERM)
            self.p.wait()
            self.p = None
            self.log.close()

    def bench(self, gguf, threads, reps, conc, decode):
        name = os.path.basename(gguf).removesuffix(".gguf").lower().replace("_", "-")
        mf = os.path.join(self.dir, "Modelfile")
        with open(mf, "w") as f:
            f.write(f"FROM {gguf}\nTEMPLATE {{{{ .Prompt }}}}\n")
        script = os.path.join(ROOT, "scripts", "ollama-bench.py")
        common = ["--model", name, "--decode", str(decode), "--threads", str(threads), "--reps", str(reps)]
        self.start(1)
        try:
            run([self.binary, "create", name, "-f", mf], env={"OLLAMA_HOST": OLLAMA_HOST})
            out = json.loads(run([sys.executable, script, "--lengths", "512,2048"] + common).stdout)
            rss = self.runner_rss()
        finally:
            self.stop()
        r = {"prefill 512": stats(out["prefill_512_samples"]), "prefill 2048": stats(out["prefill_2048_samples"]),
             "decode t=1": stats(out["decode_samples"]), "peak RSS MB": stats([rss])}
        if conc:
            self.start(max(conc))
            try:
                out = json.loads(run([sys.executable, script, "--lengths", "", "--concurrency", ",".join(map(str, conc))] + common).stdout)
            finally:
                self.stop()
            for n in conc:
                r[f"{n} concurrent, t=1"] = stats(out[f"concurrent_{n}_samples"])
        return r

    def runner_rss(self):
        pids = subprocess.run(["pgrep", "-f", "ollama runner"], capture_output=True, text=True).stdout.split()
        return max((peak_mb(int(p)) or 0 for p in pids), default=None)


FIGURES = ["prefill 512", "prefill 2048", "decode t=1", "decode greedy"]


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/semantic-peers")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", default="42M,110M")
    ap.add_argument("--types", default="F32,Q8_0,Q4_K_M")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrency", default="8,16")
    ap.add_argument("--decode", type=int, default=128, help="tokens generated per decode request")
    ap.add_argument("--no-ollama", action="store_true")
    ARGS = a = ap.parse_args()
    d = os.path.abspath(a.dir)
    os.makedirs(os.path.join(d, "bin"), exist_ok=True)
    conc = [int(x) for x in a.concurrency.split(",") if x]
    build_semantic()
    runc_bin, runc_note = build_runc(d)
    ollama_bin, ollama_note = (None, "ollama skipped: --no-ollama") if a.no_ollama else find_ollama(d)
    notes = [n for n in [runc_note, ollama_note] if n]
    for n in notes:
        log(n)
    ollama = Ollama(ollama_bin, d) if ollama_bin else None
    figures = FIGURES + [f"{n} concurrent, t=1" for n in conc] + [f"{n} concurrent, greedy" for n in conc] + ["peak RSS MB"]
    gen = os.path.join(ROOT, "bin", "semantic-gguf")
    rows = []
    for shape in a.shapes.split(","):
        ckpt = os.path.join(d, f"r{shape}.bin")
        if not os.path.exists(ckpt + ".tokenizer"):
            run([gen, "random", "--shape", shape, "--format", "llama2c", ckpt])
        for typ in a.types.split(","):
            gguf = os.path.join(d, f"r{shape}-{typ}.gguf")
            if not os.path.exists(gguf):
                run([gen, "random", "--shape", shape, "--type", typ, gguf])
            # Float32: semantic and run.c read the same llama2.c file.
            sem_model = f"llama2c:{ckpt},tokenizer={ckpt}.tokenizer" if typ == "F32" else f"gguf:{gguf}"
            res = {"semantic": semantic(sem_model, a.threads, a.reps, conc, a.decode)}
            if ollama:
                res["ollama"] = ollama.bench(gguf, a.threads, a.reps, conc, a.decode)
            if runc_bin and typ == "F32":
                res["run.c"] = runc(runc_bin, ckpt, a.threads, a.reps, a.decode + 1)
            size = os.path.getsize(ckpt if typ == "F32" else gguf) / 2**20
            rows.append((f"{shape} {typ} ({size:.0f} MB)", res))
            log(json.dumps(rows[-1]))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"`make bench-peers` {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {a.threads} threads each, {os.cpu_count()} cores ({cpu}), "
          f"medians of {a.reps} with min–max, {a.decode} tokens per decode request.\n")
    for n in notes:
        print(f"- {n}")
    print("\n| model (file) | figure | semantic | ollama | run.c | semantic / ollama | semantic / run.c |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, res in rows:
        s, o, c = res["semantic"], res.get("ollama", {}), res.get("run.c", {})
        for f in figures:
            if f not in s and f not in o and f not in c:
                continue
            better_low = f == "peak RSS MB"
            so = ratio(o.get(f), s.get(f)) if better_low else ratio(s.get(f), o.get(f))
            sc = ratio(c.get(f), s.get(f)) if better_low else ratio(s.get(f), c.get(f))
            print(f"| {label} | {f} | {fmt(s.get(f))} | {fmt(o.get(f))} | {fmt(c.get(f))} | {so} | {sc} |")
    print("\nRatios are semantic's advantage: above 1 is better for semantic (for peak RSS, the peer's over semantic's).")


if __name__ == "__main__":
    main()
