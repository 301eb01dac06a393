"""Reading DSN (flat NEODeS text and N4DS XML) into the lake's typed tables. Reads and types only."""
