"""Ready-made heartbeats for the frameworks pipelines are built with."""
