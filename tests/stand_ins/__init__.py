"""Stand-ins for servers that cannot run here, each declared as such where a test uses it."""
