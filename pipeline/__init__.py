"""Computing: declaration versions, worked time, credits, ceilings, the ledger and its publication."""
