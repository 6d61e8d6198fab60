"""Benchmarks: the original recipe against the engine on the same samples, and a plan's measured peak."""
