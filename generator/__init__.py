"""Writing real NEODeS DSN text: a compact builder for fixtures and a deterministic year generator."""
