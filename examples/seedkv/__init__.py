"""The seed's key-value callback as a state machine app: the README's example of the callback
style ("Writing your own state machine")."""
