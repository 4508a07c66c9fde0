"""sopgraph.evals: benchmark harnesses and metrics.

- `metrics`: pass@k (unbiased estimator) and n-gram Shannon entropy (word or character level, bits or nats).
- `codegen`, `harness`: pass@1 of a model on code-generation problems, with and without executable feedback;
  generated code runs only in the sandbox (tools/sandbox.py).
- `humaneval`, `mbpp`: the two benchmarks' data and prompts; `cli`: the `sopgraph eval` commands.
"""
