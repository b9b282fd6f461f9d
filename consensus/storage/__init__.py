"""Durable state through the ORM: ``store.DjangoStorage`` (the writes and recovery reads),
``writer.GroupCommitWriter`` (one writer thread, many Readies per transaction), ``values`` (the
stored form of a value) and ``databases`` (per-node database URLs, creating PostgreSQL databases).

Nothing is imported here on purpose: ``paxos_site.settings`` imports ``databases`` before Django's
app registry is ready, and ``store`` imports models.
"""
