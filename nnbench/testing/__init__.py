"""Stand-ins that speak real protocols, for tests and for measuring the generator itself."""
