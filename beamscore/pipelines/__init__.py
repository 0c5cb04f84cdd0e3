"""Build and run the scoring pipeline from a config: wiring and runner choice only."""
