"""A replicated counter: the README's example of a state machine app."""
