"""What the embedded model costs before the first useful token: install, verify, start, memory, speed.

Run: python benchmarks/local_model_startup.py [--model qwen2.5-coder-0.5b] [--home DIR]
Uses a throw-away SOPGRAPH_HOME unless --home is given, so the join is measured from the installed parts.
Prints times and ratios; asserts nothing (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any


def chat(base_url: str, alias: str, prompt: str, max_tokens: int) -> tuple[dict[str, Any], float]:
    from sopgraph.tools.local_model import server as lms

    body = {
        "model": alias,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    req = urllib.request.Request(
        f"{base_url}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with lms._opener.open(req, timeout=600) as resp:
        usage = json.load(resp)["usage"]
    return usage, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None)
    parser.add_argument("--home", default=None)
    args = parser.parse_args()
    home = args.home or tempfile.mkdtemp(prefix="sopgraph-bench-")
    os.environ["SOPGRAPH_HOME"] = home
    from sopgraph.tools import local_model as lm
    from sopgraph.tools.local_model import server as lms

    rows: list[tuple[str, str]] = []
    try:
        spec = lm.get_spec(args.model)
        t = time.perf_counter()
        path = lm.install(spec)
        install_s = time.perf_counter() - t
        rows.append(
            (
                "install (join + sha256 + fsync)",
                f"{install_s:.2f} s  ({spec.size / install_s / 1e6:.0f} MB/s)",
            )
        )
        t = time.perf_counter()
        lm.install(spec)
        again_s = time.perf_counter() - t
        rows.append(("install again (sidecar check)", f"{again_s * 1000:.2f} ms"))
        t = time.perf_counter()
        lm.verify(spec, full=True)
        full_s = time.perf_counter() - t
        rows.append(("verify(full=True)", f"{full_s:.2f} s"))

        t = time.perf_counter()
        handle = lm.ensure_server(spec)
        start_s = time.perf_counter() - t
        rss_loaded = lms._rss_bytes(handle.pid) or 0
        rows.append(("server start to ready", f"{start_s:.2f} s"))
        rows.append(("server RSS after load", f"{rss_loaded / 1e6:.0f} MB"))

        code = (
            "import time; from sopgraph.tools import local_model as lm; t = time.perf_counter(); "
            f"h = lm.ensure_server({spec.name!r}); print(h.pid, time.perf_counter() - t)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        pid, reuse_s = out.split()
        assert int(pid) == handle.pid, "second process did not reuse the server"
        rows.append(("ensure_server from another process (reuse)", f"{float(reuse_s) * 1000:.0f} ms"))

        chat(handle.base_url, handle.alias, "Say hi.", 4)  # warm-up
        task = "Write a Python function that merges two sorted lists."
        usage, gen_s = chat(handle.base_url, handle.alias, task, 128)
        rows.append(
            (
                "generation",
                f"{usage['completion_tokens'] / gen_s:.1f} tok/s (incl. prompt of {usage['prompt_tokens']})",
            )
        )
        long_prompt = "Summarise: " + " ".join(f"item {i} costs {i * 3} dollars." for i in range(120))
        usage, pre_s = chat(handle.base_url, handle.alias, long_prompt, 1)
        rows.append(
            (
                "prompt processing",
                f"{usage['prompt_tokens'] / pre_s:.0f} tok/s ({usage['prompt_tokens']} tokens)",
            )
        )
        rss_used = lms._rss_bytes(handle.pid) or 0
        rows.append(("server RSS after requests", f"{rss_used / 1e6:.0f} MB"))

        t = time.perf_counter()
        lm.stop(spec)
        rows.append(("stop", f"{time.perf_counter() - t:.2f} s"))
        rows.append(("ratio full verify / sidecar check", f"{full_s / max(again_s, 1e-9):,.0f}x"))
        rows.append(("ratio first start / reuse", f"{start_s / max(float(reuse_s), 1e-9):,.0f}x"))
        rows.append(("model file", f"{path} ({spec.size:,} bytes)"))
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)
    width = max(len(k) for k, _ in rows)
    print(f"local model: {spec.name}  threads={os.environ.get(lm.ENV_THREADS, lm.DEFAULT_THREADS)}")
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    main()
