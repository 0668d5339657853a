"""Loaders from public formats into the lake's input tables."""

from .job import load_sources

__all__ = ["load_sources"]
