"""Tools: benchmarks and helper scripts."""
