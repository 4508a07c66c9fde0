"""The software company's roles (MetaGPT's SOP): one module per role, prompts beside the nodes."""
