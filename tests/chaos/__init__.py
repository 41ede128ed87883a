"""Chaos suite (issue 14): the whole mesh under ``lucid up`` with every process killed in turn."""
