"""Standalone tools (weights conversion)."""
