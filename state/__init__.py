"""sopgraph.state"""
