"""Example apps (not installed by default): see README.md "Writing your own state machine"."""
