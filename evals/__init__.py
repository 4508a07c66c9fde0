"""sopgraph.evals: benchmark harnesses and metrics.

- `metrics`: pass@k (unbiased estimator) and n-gram Shannon entropy (word or character level, bits or nats).
- `codegen`, `harness`: pass@1 of a model on code-generation problems, with and without executable feedback;
  generated code runs only in the sandbox (tools/sandbox/).
- `humaneval`, `mbpp`: the two benchmarks' data and prompts; `cli`: the `sopgraph eval` commands.
- `groupchat` (T1/T2 dislike test, dialogue entropy), `groupchat_probes` (understanding probes),
  `groupchat_ablation` (one run per ablation switch, resumable, report), `groupchat_cli`.
- `software` (tasks of `software_tasks.yaml` through the company graph, executability scored 1-4 in the
  sandbox, resumable, report), `software_cli`.
"""
