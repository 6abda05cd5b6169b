"""The heavy half of the engine: runs only inside the detached training process (`python -m engine.train`)."""
