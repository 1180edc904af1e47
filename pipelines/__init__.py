"""Pipeline wiring, compilation and local/remote runs."""
