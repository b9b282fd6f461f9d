"""The live dashboard of a node: what it shows (``snapshot``), how it stays current (``feed``, a
runtime observer plus a broadcaster task that pushes snapshots through the channel layer), the
websocket consumer browsers subscribe with (``consumers``) and the staff-only pages
(``views``). ``monitoring.Monitoring`` is the one object ``runpaxos`` attaches to a node."""
