"""Command-line interface: ``hyft <verb> config.yaml``."""
