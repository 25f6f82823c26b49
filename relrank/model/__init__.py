"""The networks (one registry entry per backbone: registry.py), their graph, parameters and forward pass,
preprocessing, losses, and weights: files read and ported, or fetched by name."""
