"""REST API of the KV store (``/api/kv/``): lean async views documented by DRF serializers."""
