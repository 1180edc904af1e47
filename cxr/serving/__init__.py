"""The web app for radiologists (Flask): upload page, JSON API, health endpoints."""
