"""Running pipelines: steps in order, each recorded in the run store."""
