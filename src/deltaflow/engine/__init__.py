"""Execution engines: the local thread-pool engine (Beam comes later)."""
