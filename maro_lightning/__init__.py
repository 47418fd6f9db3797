"""maro_lightning: MARO (Multi-Agent Reward Optimization) for language models in social games, on Lightning."""
