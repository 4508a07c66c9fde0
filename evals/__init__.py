"""sopgraph.evals"""
