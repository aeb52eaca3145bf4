"""Sync steps: move one stream from a source to a destination."""
