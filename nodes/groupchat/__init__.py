"""Nodes of the group-chat simulation: character actions (actions.py), who answers for a character
(asking.py), the stage machine's nodes and routes (stages.py), and the prompts (prompts.py)."""
