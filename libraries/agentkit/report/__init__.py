"""The stakeholder report: metrics recorded during the run -> classification of
failures -> summary -> HTML and Markdown (with charts)."""
