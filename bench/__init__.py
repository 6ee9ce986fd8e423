"""Measurements, reported and never asserted: `python -m bench.core`, `python -m bench.flows`."""
