"""sopgraph: multi-agent standard operating procedures compiled into LangGraph state graphs."""

__version__ = "0.1.0"
