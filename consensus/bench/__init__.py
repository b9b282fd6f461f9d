"""``paxosbench``: a closed-loop load generator for this service (and etcd, for comparison).

One asyncio process drives N concurrent clients for a fixed time after a warm-up; every client
sends its next request when the previous one answers. The same generator drives etcd's JSON
gateway with ``--etcd``, so both systems are measured side by side by identical code.
"""
