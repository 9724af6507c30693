"""The agent loop and the chat turns that run it."""
