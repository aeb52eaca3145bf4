"""The run store: every run and step, with counts, timings and errors."""

from deltaflow.metadata.store import RunRecord, RunStore, StepRecord, default_store_path

__all__ = ["RunRecord", "RunStore", "StepRecord", "default_store_path"]
