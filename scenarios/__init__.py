"""sopgraph.scenarios"""
