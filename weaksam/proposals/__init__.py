"""Stages C-E: SAM proposals from point prompts and the grid, their store, filters and recall."""
