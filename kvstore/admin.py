"""Admin of the KV store: read-only views of replicated state, registered once the models exist."""
