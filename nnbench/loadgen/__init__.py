"""The load generator: nnsight traces as concurrent requests, every response checked."""
