"""Nodes of the group-chat simulation: the stage machine's nodes and routes (stages.py), the character actions
(actions.py), who answers for a character (asking.py), the prompts (prompts.py) and the reply schemas they ask
for (replies.py), the game's rules (rules.py) and reply hygiene (hygiene.py)."""
