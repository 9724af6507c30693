"""The edge: middleware, Connexion fixes, errors, validation, SSE, WebSocket."""
