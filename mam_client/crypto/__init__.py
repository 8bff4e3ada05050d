"""Ternary primitives shared by the MAM codec, the tangle node and proof of work (pure, no I/O)."""
