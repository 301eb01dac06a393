"""Orchestration only: Prefect flows and the `cpf` command line wrap the plain functions."""
