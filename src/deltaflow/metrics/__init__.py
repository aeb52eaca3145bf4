"""The metrics engine: SQL metric definitions run for a date (``definitions``, ``engine``)."""
