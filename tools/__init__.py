"""Project tools: code generation, spec checks, the throwaway PostgreSQL server (pgserver)."""
