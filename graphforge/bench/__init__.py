"""Benchmarks behind ``graphforge bench ...`` (one module per benchmark)."""
