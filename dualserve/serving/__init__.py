"""Serving: pipelines and their setup, the service and its run path, OpenAPI, pages and settings."""
