"""Data quality: checks pushed down to the warehouse (``checks``)."""
