"""The Django project of the Paxos replication service: settings, URLs and the ASGI entry point."""
