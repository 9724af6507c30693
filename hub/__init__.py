"""Aether Hub: a self-hosted, spec-first control plane for AI agents."""

__version__ = "0.1.0"
