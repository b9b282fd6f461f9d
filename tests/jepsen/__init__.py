"""Jepsen-style tests: real node processes, a nemesis, a history and a linearizability checker.

``history``   operations as clients saw them (invoke, complete, ok / fail / info)
``checker``   per-key linearizability of a register (Wing-Gong/Lowe search with memoization),
              "no acknowledged write lost" and agreement of the final state
``client``    a tiny client over the REST API (commands endpoint or the KV endpoints), plus
              deliberately broken variants for negative controls
``nemesis``   faults: kill -9, pause, partitions through ``tests.fixtures.nemesis`` proxies,
              restart of every node
``workloads`` register and bank workloads, the runner and its report
"""
