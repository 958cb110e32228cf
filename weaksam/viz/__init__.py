"""Figures for the report and the inspection command."""
