"""The Textual workbench. Imports engine modules only inside workers (see services.py), so the first
frame never waits for torch."""
