"""sopgraph.tools"""
