"""A replicated key-value store: the state machine the service ships with (DESIGN.md §5)."""
