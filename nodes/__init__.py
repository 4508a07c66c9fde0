"""sopgraph.nodes"""
