"""Model serving on Ray Serve: serve specs, their Serve config, and deploy/status/delete."""
