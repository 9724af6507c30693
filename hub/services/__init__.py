"""The work behind writes: each function is one transaction."""
