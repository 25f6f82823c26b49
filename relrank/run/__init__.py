"""A run's folder: its lock and files, and its checkpoints."""
