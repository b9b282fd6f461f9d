"""Sans-IO multi-Paxos: messages and ticks in, a ``Ready`` out. No Django, asyncio, sockets, clock
or global random source in here; the runtime (or the simulator) does all IO."""

from .ballot import ZERO_BALLOT, Ballot
from .config import ReplicaConfig
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .messages import (
    MESSAGE_TYPES,
    NOOP,
    Accept,
    Accepted,
    AcceptedEntry,
    ChosenEntry,
    Command,
    Forward,
    Heartbeat,
    HeartbeatAck,
    LearnReply,
    LearnRequest,
    Message,
    Nack,
    Prepare,
    Promise,
    ReadIndexReply,
    ReadIndexRequest,
    TimeoutNow,
    Value,
)
from .ready import AcceptedWrite, Failed, LogRead, Persist, ReadState, Ready
from .replica import RandomSource, Replica, Role
from .storage import InitialState, MemoryStorage, StoredInstance

__all__ = [
    "MESSAGE_TYPES",
    "NOOP",
    "ZERO_BALLOT",
    "Accept",
    "Accepted",
    "AcceptedEntry",
    "AcceptedWrite",
    "Ballot",
    "ChosenEntry",
    "Command",
    "Failed",
    "Forward",
    "Heartbeat",
    "HeartbeatAck",
    "InitialState",
    "LearnReply",
    "LearnRequest",
    "LocalProtocolError",
    "LogRead",
    "MemoryStorage",
    "Message",
    "Nack",
    "Persist",
    "Prepare",
    "ProtocolError",
    "Promise",
    "RandomSource",
    "ReadIndexReply",
    "ReadIndexRequest",
    "ReadState",
    "Ready",
    "RemoteProtocolError",
    "Replica",
    "ReplicaConfig",
    "Role",
    "StoredInstance",
    "TimeoutNow",
    "Value",
]
