"""Aether Hub: a self-hosted, spec-first control plane for AI agents."""

import warnings

__version__ = "0.1.0"

# Connexion imports starlette's test client at import time, which warns that it prefers
# httpx2; that says nothing about the hub, so keep it out of the server's output.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
