"""sopgraph.graphs"""
