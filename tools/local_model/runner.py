"""The server process: llama.cpp's own C++ server, in-process through xllamacpp's prebuilt wheel.

Run as ``python -m sopgraph.tools.local_model.runner --model PATH --alias NAME --port N ...``; it loads the
model, serves the OpenAI-compatible API on loopback (n_parallel slots, continuous batching, prompt-cache
reuse, json_schema turned into a grammar) and exits on SIGTERM or SIGINT. A child process, not a thread of
the caller, so one server is shared by every sopgraph process on the machine and outlives none it should.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="sopgraph-llama-server")
    ap.add_argument("--model", required=True)
    ap.add_argument("--alias", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ctx", type=int, default=8192, help="tokens of KV cache, shared by all slots")
    ap.add_argument("--parallel", type=int, default=4, help="request slots decoded together")
    ap.add_argument("--threads", type=int, default=1, help="threads for generation")
    ap.add_argument("--threads-batch", type=int, default=0, help="threads for prompt processing (0: --threads)")
    ap.add_argument("--poll", type=int, default=0, help="ggml thread busy-wait level 0-100 (0: sleep)")
    ap.add_argument("--cache-reuse", type=int, default=256, help="min chunk for KV-shift prompt reuse (0: off)")
    ap.add_argument("--verbosity", type=int, default=2)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    # Block the stop signals before the server's threads exist, so they inherit the mask and sigwait below
    # is the one place that receives them.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.model_alias = {args.alias}
    params.offline = True  # never fetch anything from a model hub
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.kv_unified = True  # one KV pool: any slot may use the whole context when the others are idle
    params.cont_batching = True
    params.cache_prompt = True
    params.n_cache_reuse = args.cache_reuse
    params.cpuparams.n_threads = args.threads
    params.cpuparams.poll = args.poll
    params.cpuparams_batch.n_threads = args.threads_batch or args.threads
    params.cpuparams_batch.poll = args.poll
    params.verbosity = args.verbosity
    params.endpoint_metrics = True
    try:
        server = xlc.Server(params)  # returns once the model is loaded and the HTTP server listens
    except RuntimeError as exc:  # llama.cpp has logged why (a bad file, too little memory) just above
        print(f"sopgraph: llama.cpp could not serve {args.model}: {exc}", file=sys.stderr, flush=True)
        return 2
    print(f"sopgraph: serving {args.alias} at {server.listening_address}", flush=True)
    signal.sigwait(stop)
    # Leave without running the extension's teardown: nothing is kept, and a slot mid-request must not
    # hold up the exit.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
