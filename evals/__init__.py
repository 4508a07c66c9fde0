"""sopgraph.evals: benchmark harnesses and metrics.

- `metrics`: pass@k (unbiased estimator) and n-gram Shannon entropy (word or character level, bits or nats).
- `codegen`, `harness`: pass@1 of a model on code-generation problems, with and without executable feedback;
  generated code runs only in the sandbox (tools/sandbox/).
- `humaneval`, `mbpp`: the two benchmarks' data and prompts.
- `groupchat` (T1/T2 dislike test, dialogue entropy), `groupchat_probes` (understanding probes),
  `groupchat_ablation` (one run per ablation switch, resumable, report).
- `software` (tasks of `software_tasks.yaml` through the company graph, executability scored 1-4 in the
  sandbox, resumable, report).

The `sopgraph eval` commands live with the rest of the CLI (graphs/cli/evals*.py), which imports these
modules; nothing here imports the CLI.
"""
