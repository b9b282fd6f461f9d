"""Jepsen-style tests: real node processes, a nemesis, a history and a linearizability checker.

``history``   operations as clients saw them (invoke, complete, ok / fail / info)
``checker``   per-key linearizability of a register (Wing-Gong/Lowe search with memoization),
              "no acknowledged write lost" and agreement of the final state
``client``    a tiny client over the REST API (commands endpoint or the KV endpoints), plus
              deliberately broken variants for negative controls
``nemesis``   faults: kill -9, pause, partitions through ``tests.fixtures.nemesis`` proxies,
              restart of every node; on PostgreSQL, a crash of the database server
              (``db-crash``, ``test_db_crash.py``)
``workloads`` register and bank workloads, the runner and its report

Running:

    .venv/bin/pytest tests/jepsen                      # unit tests + the short runs (~1 min)
    .venv/bin/pytest tests/jepsen --soak=600 -k soak -s  # 10 minutes on 3 nodes, then on 5
    JEPSEN_SEED=123 .venv/bin/pytest tests/jepsen ...   # replay a run's random choices

Every run prints a report (ops, failures, indeterminate ops, faults injected, time to check, the
verdict) and keeps its history as JSON lines next to the node logs (``history.jsonl``).
"""
