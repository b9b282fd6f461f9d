"""Mutual authentication of peer links: HMAC-SHA256 challenge-response over the cluster secret.

Theory of operation
-------------------
Every node of a cluster knows the shared ``secret`` (DESIGN.md §5). When node C opens a link to
node S, before any Paxos frame flows::

    S -> C   Challenge {v, t="challenge", node_id=S, nonce=Ns, members=[...], groups=[...]}
    C -> S   Hello     {v, t="hello", node_id=C, nonce=Nc, mac=MAC("...|Ns|Nc|C|S"), members=[...],
                        groups=[...]}
    S -> C   Welcome   {v, t="welcome", mac=MAC("...|Nc|Ns|S|C")}

with ``MAC(m) = HMAC-SHA256(secret, "paxos-peer-v1|" + m)`` and nonces written in hex.

* S proves nothing until C has proven knowledge of the secret over S's fresh nonce, so an outsider
  learns no MAC it could reuse; a Hello recorded from an earlier connection answers an old nonce
  and fails (no replay).
* C checks the Welcome over *its own* fresh nonce, so it knows it reached a genuine cluster node
  (and the one it meant to: S's id is inside the MAC) before it sends Paxos traffic there.
* The two MACs cover the same material with the roles swapped (nonce order and ids), so one can
  never stand in for the other; a node never authenticates a link to itself (C != S), which is
  the case where the swap would be symmetric.
* Node ids are bound into the MACs, so an authenticated peer cannot claim another member's id;
  the consumer then drops any frame whose messages name a different ``src``.
* ``members`` is the node ids of the sender's cluster config. Each side refuses a peer whose
  list differs from its own, once the peer has proven the secret: a majority is counted over
  that list, and two nodes that count over different lists can each see "a majority" that the
  other does not, which is how two values get chosen for one instance (3 of {1..5} and 2 of
  {1, 2, 3} need not overlap). Changing the membership is not supported; a config edited on some
  nodes only is refused with a message that names both lists. A peer that sends no list (an
  older release) is not checked, so a cluster can upgrade one node at a time.
* ``groups`` is the sender's groups as ``[group id, state machine name]`` pairs. Every node
  applies a group's chosen commands to the machine its own config names, so two nodes that name
  different machines for one group give different results for the same command (the replicas
  diverge). Each side refuses an authenticated peer that runs another machine for a group both
  list, with one line that reads the same in both logs. A group only one side lists is allowed:
  a group is added by editing the configs and restarting the nodes one by one, so their group
  lists differ meanwhile. A peer that sends no group list (an older release) is not checked.

What this does not do: it authenticates the connection, not each frame. Against an attacker who
can rewrite TCP traffic on the cluster network, run the peer port behind TLS (wss://) or on a
private network.

Everything here is pure (no IO, no clock): the consumer and the link feed bytes in and send the
bytes that come out, so every rule above is a unit test.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import msgpack

from consensus.core.errors import RemoteProtocolError

from .untrusted import shown

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HANDSHAKE_VERSION",
    "NONCE_SIZE",
    "AuthError",
    "Challenge",
    "ClientHandshake",
    "Hello",
    "UNCHECKED",
    "UNCHECKED_GROUPS",
    "ConfigDiffers",
    "GroupsDiffer",
    "MembersDiffer",
    "ServerHandshake",
    "Welcome",
    "as_groups",
    "check_fits",
    "check_same_machines",
    "check_same_members",
    "client_mac",
    "decode_challenge",
    "decode_hello",
    "decode_welcome",
    "encode_handshake",
    "new_nonce",
    "server_mac",
    "unchecked",
]

HANDSHAKE_VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32
HANDSHAKE_TIMEOUT = 5.0
"""Seconds a link may spend between the TCP/websocket open and the Welcome; then it is closed."""
MAX_HANDSHAKE_FRAME = 64 * 1024
"""Handshake frames are ~150 bytes plus the member and group lists (a few bytes per node, a few
plus the machine's name per group); anything larger is not one. It also bounds what a peer can
make this node allocate when decoding one (``check_fits`` refuses a config that cannot fit)."""
MAX_REPORTED_GROUPS = 3
"""How many differing groups a ``GroupsDiffer`` message names (then "and N more")."""
MAX_REPORTED_NAME = 60
"""How much of a state machine's name a ``GroupsDiffer`` message quotes."""

_DOMAIN = "paxos-peer-v1"


class AuthError(RemoteProtocolError):
    """The peer failed authentication or broke the handshake. Close the link."""


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_SIZE)


def _mac(
    secret: bytes, first_nonce: bytes, second_nonce: bytes, first_id: int, second_id: int
) -> bytes:
    material = f"{_DOMAIN}|{first_nonce.hex()}|{second_nonce.hex()}|{first_id}|{second_id}"
    return hmac.new(secret, material.encode("ascii"), hashlib.sha256).digest()


def client_mac(
    secret: bytes, server_nonce: bytes, client_nonce: bytes, client_id: int, server_id: int
) -> bytes:
    """The client's proof: MAC of "paxos-peer-v1|server_nonce|client_nonce|client_id|server_id"."""
    return _mac(secret, server_nonce, client_nonce, client_id, server_id)


def server_mac(
    secret: bytes, server_nonce: bytes, client_nonce: bytes, client_id: int, server_id: int
) -> bytes:
    """The server's proof: the same material with the roles swapped."""
    return _mac(secret, client_nonce, server_nonce, server_id, client_id)


# ---------------------------------------------------------------------------------------------
# Handshake frames: small msgpack maps with a version and a type.
# ---------------------------------------------------------------------------------------------


Members = tuple[int, ...]
"""Sorted node ids of a cluster config."""


def as_members(node_ids: Iterable[int]) -> Members:
    """Node ids in the one form lists are compared in: sorted, without repeats."""
    return tuple(sorted(set(node_ids)))


Groups = tuple[tuple[int, str], ...]
"""(group id, state machine name) pairs of a cluster config, sorted by group id."""


def as_groups(pairs: Iterable[tuple[int, str]]) -> Groups:
    """(group id, state machine name) pairs in the one form they are compared in: sorted by
    group id. A group id given twice is an error (a config lists each group once)."""
    groups: dict[int, str] = {}
    for group_id, machine in pairs:
        if group_id in groups:
            raise ValueError(f"group {group_id} is listed twice")
        groups[group_id] = machine
    return tuple(sorted(groups.items()))


@dataclass(frozen=True, slots=True)
class Challenge:
    node_id: int
    nonce: bytes
    members: Members | None = None
    """The server's node ids; None from a release that did not send them."""
    groups: Groups | None = None
    """The server's (group id, state machine) pairs; None from a release that did not send them."""


@dataclass(frozen=True, slots=True)
class Hello:
    node_id: int
    nonce: bytes
    mac: bytes
    members: Members | None = None
    """The client's node ids; None from a release that did not send them."""
    groups: Groups | None = None
    """The client's (group id, state machine) pairs; None from a release that did not send them."""


@dataclass(frozen=True, slots=True)
class Welcome:
    mac: bytes


HandshakeFrame = Challenge | Hello | Welcome

_TYPE_NAMES: dict[type, str] = {Challenge: "challenge", Hello: "hello", Welcome: "welcome"}


def encode_handshake(frame: HandshakeFrame) -> bytes:
    body: dict[str, object] = {"v": HANDSHAKE_VERSION, "t": _TYPE_NAMES[type(frame)]}
    if isinstance(frame, Challenge | Hello):
        body["node_id"] = frame.node_id
        body["nonce"] = frame.nonce
    if isinstance(frame, Hello | Welcome):
        body["mac"] = frame.mac
    if isinstance(frame, Challenge | Hello) and frame.members is not None:
        body["members"] = list(frame.members)
    if isinstance(frame, Challenge | Hello) and frame.groups is not None:
        body["groups"] = [[group_id, machine] for group_id, machine in frame.groups]
    return msgpack.packb(body)


def _node_id(body: dict[str, object]) -> int:
    node_id = body.get("node_id")
    if type(node_id) is not int or not 0 <= node_id < 2**63:
        raise AuthError("handshake: node_id must be a non-negative integer")
    return node_id


def _members(body: dict[str, object]) -> Members | None:
    """The optional member list: sorted distinct node ids, or None when absent."""
    if "members" not in body:
        return None
    members = body["members"]
    if (
        type(members) is not list
        or not members
        or any(type(node_id) is not int or not 0 <= node_id < 2**63 for node_id in members)
    ):
        raise AuthError("handshake: members must be a non-empty list of node ids")
    return as_members(members)


def _groups(body: dict[str, object]) -> Groups | None:
    """The optional group list: distinct [group id, non-empty machine name] pairs, or None when
    absent. The frame's size limit bounds its length (like the member list's)."""
    if "groups" not in body:
        return None
    groups = body["groups"]
    if type(groups) is not list or not all(
        type(pair) is list
        and len(pair) == 2
        and type(pair[0]) is int
        and 0 <= pair[0] < 2**63
        and type(pair[1]) is str
        and pair[1]
        for pair in groups
    ):
        raise AuthError("handshake: groups must be a list of [group id, state machine] pairs")
    if len({pair[0] for pair in groups}) != len(groups):
        raise AuthError("handshake: groups lists a group id twice")
    return as_groups((group_id, machine) for group_id, machine in groups)


def _blob(body: dict[str, object], key: str, size: int) -> bytes:
    value = body.get(key)
    if type(value) is not bytes or len(value) != size:
        raise AuthError(f"handshake: {key} must be {size} bytes")
    return value


def _decode_body(data: object, type_name: str) -> dict[str, object]:
    if type(data) is not bytes:
        raise AuthError("handshake frames must be binary")
    if len(data) > MAX_HANDSHAKE_FRAME:
        raise AuthError(f"handshake frame of {len(data)} bytes is too large")
    try:
        body = msgpack.unpackb(data)
    except Exception:  # untrusted bytes: any parser failure just means "not a handshake"
        raise AuthError("handshake frame is not msgpack") from None
    if type(body) is not dict:
        raise AuthError("handshake frame must be a map")
    version = body.get("v")
    if type(version) is not int or version != HANDSHAKE_VERSION:
        raise AuthError(f"unsupported handshake version {shown(version)} (this node speaks 1)")
    if body.get("t") != type_name:
        raise AuthError(f"expected a {type_name} frame, got {shown(body.get('t'))}")
    return body


def decode_challenge(data: object) -> Challenge:
    """Parse a Challenge; raise ``AuthError`` for anything else."""
    body = _decode_body(data, "challenge")
    return Challenge(
        node_id=_node_id(body),
        nonce=_blob(body, "nonce", NONCE_SIZE),
        members=_members(body),
        groups=_groups(body),
    )


def decode_hello(data: object) -> Hello:
    """Parse a Hello; raise ``AuthError`` for anything else."""
    body = _decode_body(data, "hello")
    return Hello(
        node_id=_node_id(body),
        nonce=_blob(body, "nonce", NONCE_SIZE),
        mac=_blob(body, "mac", MAC_SIZE),
        members=_members(body),
        groups=_groups(body),
    )


def decode_welcome(data: object) -> Welcome:
    """Parse a Welcome; raise ``AuthError`` for anything else."""
    return Welcome(mac=_blob(_decode_body(data, "welcome"), "mac", MAC_SIZE))


EARLIER_RELEASES_MAX_FRAME = 4096
"""The handshake frames a node of the release before the group check accepts: a node whose group
list would make its frames larger sends none (``groups_to_send``), so that a cluster can still be
upgraded node by node."""


def handshake_size(
    node_id: int, members: Collection[int], groups: Iterable[tuple[int, str]] | None
) -> int:
    """Bytes of this node's Hello (its Challenge is no larger)."""
    hello = Hello(
        node_id=node_id,
        nonce=bytes(NONCE_SIZE),
        mac=bytes(MAC_SIZE),
        members=as_members(members),
        groups=None if groups is None else as_groups(groups),
    )
    return len(encode_handshake(hello))


def groups_to_send(
    node_id: int, members: Collection[int], groups: tuple[tuple[int, str], ...] | None
) -> tuple[tuple[int, str], ...] | None:
    """``groups``, or None (not compared) if they would make this node's handshake frames larger
    than a node of an earlier release accepts (about 600 groups, fewer with long names)."""
    if groups is None:
        return None
    if handshake_size(node_id, members, groups) > EARLIER_RELEASES_MAX_FRAME:
        return None
    return groups


def check_fits(
    node_id: int, members: Collection[int], groups: Iterable[tuple[int, str]] | None
) -> None:
    """``ValueError`` if this node's handshake frames would be larger than a peer accepts (a
    config with very many groups or very long state machine names)."""
    size = handshake_size(node_id, members, groups)
    if size > MAX_HANDSHAKE_FRAME:
        raise ValueError(
            f"the node and group lists make a peer handshake frame of {size} bytes, more than "
            f"the {MAX_HANDSHAKE_FRAME} a peer accepts (fewer groups or shorter state machine "
            "names)"
        )


class ConfigDiffers(AuthError):
    """An authenticated peer's cluster config disagrees with ours where every node's must agree
    (the node list, a group's state machine). ``peer_id`` proved the secret."""

    def __init__(self, message: str, peer_id: int) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class MembersDiffer(ConfigDiffers):
    """An authenticated peer's cluster config lists other nodes than ours. The message names
    both nodes by id, so it reads the same in either node's log (it also travels as the close
    reason)."""


class GroupsDiffer(ConfigDiffers):
    """An authenticated peer runs another state machine than ours for a group we both list. The
    message names the nodes in the order of their ids, so both logs hold the same line."""


def check_same_members(node_id: int, ours: Members, peer_id: int, theirs: Members | None) -> None:
    """``MembersDiffer`` if the peer sent a node list and it is not ours."""
    if theirs is None or theirs == ours:
        return
    raise MembersDiffer(
        f"node lists differ: node {peer_id} lists {_listed(theirs)}, node {node_id} lists "
        f"{_listed(ours)}; every node must list the same nodes (changing the membership is not "
        "supported; a majority counted over different lists can choose two values)",
        peer_id,
    )


def _listed(members: Members) -> str:
    return ", ".join(map(str, members))


def check_same_machines(node_id: int, ours: Groups, peer_id: int, theirs: Groups | None) -> None:
    """``GroupsDiffer`` if the peer sent its groups and runs another state machine than ours for
    a group both list. Groups only one side lists are not compared (a group being added)."""
    if theirs is None:
        return
    mine = dict(ours)
    differ = [(g, mine[g], machine) for g, machine in theirs if g in mine and mine[g] != machine]
    if not differ:
        return
    (low, low_is_mine), (high, _) = sorted([(node_id, True), (peer_id, False)])
    parts = []
    for group_id, my_machine, their_machine in differ[:MAX_REPORTED_GROUPS]:
        first, second = (my_machine, their_machine) if low_is_mine else (their_machine, my_machine)
        parts.append(
            f"group {group_id} runs {_quoted(first)} on node {low} and {_quoted(second)} "
            f"on node {high}"
        )
    more = len(differ) - MAX_REPORTED_GROUPS
    raise GroupsDiffer(
        f"group state machines differ: {', '.join(parts)}"
        f"{f' and {more} more group(s)' if more > 0 else ''}; every node must run the same "
        "state machine for a group",
        peer_id,
    )


def _quoted(machine: str) -> str:
    """A state machine's name for a log line: quoted, cut short, one line."""
    cut = machine[:MAX_REPORTED_NAME] + ("..." if len(machine) > MAX_REPORTED_NAME else "")
    return json.dumps(cut, ensure_ascii=True)


UNCHECKED = " (it sent no node list, as releases before the check did: not compared)"
"""Appended to a link-up log line when the peer's node list could not be compared."""
UNCHECKED_GROUPS = (
    " (it sent no group list, as releases before the check did: state machines not compared)"
)
"""Appended to a link-up log line when the peer's groups could not be compared."""


def unchecked(members: Members | None, groups: Groups | None) -> str:
    """What a link-up log line adds about a peer that sent no node or no group list."""
    if members is None:
        return UNCHECKED
    if groups is None:
        return UNCHECKED_GROUPS
    return ""


# ---------------------------------------------------------------------------------------------
# The two roles, as small sans-IO state machines.
# ---------------------------------------------------------------------------------------------


class ServerHandshake:
    """The accepting side (the consumer). Usage::

    hs = ServerHandshake(secret, node_id=2, members={1, 2, 3}, groups=[(1, "kv")])
    send(hs.challenge())
    peer_id, welcome = hs.receive_hello(first_frame)   # AuthError -> close the link
    send(welcome)

    Without ``groups`` it sends no group list and compares none (as releases before the check).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        node_id: int,
        members: Collection[int],
        groups: Iterable[tuple[int, str]] | None = None,
        nonce: bytes | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self.node_id = node_id
        self._members = as_members(members)
        self._groups = None if groups is None else as_groups(groups)
        self._nonce = nonce if nonce is not None else new_nonce()
        self.peer_id: int | None = None
        """The authenticated peer, once receive_hello() succeeded."""
        self.peer_members: Members | None = None
        """The node list the peer sent (None: an earlier release that sends none, unchecked)."""
        self.peer_groups: Groups | None = None
        """The groups the peer sent (None: an earlier release that sends none, unchecked)."""
        self._done = False

    def challenge(self) -> bytes:
        challenge = Challenge(
            node_id=self.node_id, nonce=self._nonce, members=self._members, groups=self._groups
        )
        return encode_handshake(challenge)

    def receive_hello(self, data: object) -> tuple[int, bytes]:
        """Verify the client's Hello; return its node id and the Welcome frame to send back."""
        if self._done:
            raise AuthError("handshake already used")  # one nonce, one verification
        self._done = True
        hello = decode_hello(data)
        if hello.node_id not in self._members:
            raise AuthError(f"node {hello.node_id} is not a member of this cluster")
        if hello.node_id == self.node_id:
            raise AuthError(f"node {hello.node_id} is this node; refusing a link to itself")
        if hello.nonce == self._nonce:
            raise AuthError("client echoed the server nonce")
        expected = client_mac(self._secret, self._nonce, hello.nonce, hello.node_id, self.node_id)
        if not hmac.compare_digest(expected, hello.mac):
            raise AuthError(
                f"bad MAC from a peer claiming to be node {hello.node_id} (a different "
                '"secret" in its config? every node must have the same one)'
            )
        check_same_members(self.node_id, self._members, hello.node_id, hello.members)
        if self._groups is not None:
            check_same_machines(self.node_id, self._groups, hello.node_id, hello.groups)
        self.peer_id, self.peer_members = hello.node_id, hello.members
        self.peer_groups = hello.groups
        mac = server_mac(self._secret, self._nonce, hello.nonce, hello.node_id, self.node_id)
        return hello.node_id, encode_handshake(Welcome(mac=mac))


class ClientHandshake:
    """The connecting side (a PeerLink). Usage::

    hs = ClientHandshake(secret, node_id=1, server_id=2, members={1, 2, 3}, groups=[(1, "kv")])
    send(hs.receive_challenge(first_frame))
    hs.receive_welcome(second_frame)                   # AuthError -> close, back off

    Without ``members`` (``groups``) it sends no node (group) list and checks none, as releases
    before the check did.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        node_id: int,
        server_id: int,
        members: Collection[int] | None = None,
        groups: Iterable[tuple[int, str]] | None = None,
        nonce: bytes | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self.node_id = node_id
        self.server_id = server_id
        self._members = None if members is None else as_members(members)
        self._groups = None if groups is None else as_groups(groups)
        self._nonce = nonce if nonce is not None else new_nonce()
        self._server_nonce: bytes | None = None
        self._server_members: Members | None = None
        self._server_groups: Groups | None = None
        self.authenticated = False

    def receive_challenge(self, data: object) -> bytes:
        """Check the Challenge is from the node we meant to reach; return our Hello."""
        if self._server_nonce is not None:
            raise AuthError("second challenge in one handshake")
        challenge = decode_challenge(data)
        if challenge.node_id != self.server_id:
            raise AuthError(
                f"expected node {self.server_id} at this address, but node {challenge.node_id} "
                "answered (check the nodes list in the cluster config)"
            )
        if challenge.nonce == self._nonce:
            raise AuthError("server echoed the client nonce")
        self._server_nonce = challenge.nonce
        # Both lists are checked once the server proved the secret.
        self._server_members, self._server_groups = challenge.members, challenge.groups
        mac = client_mac(self._secret, challenge.nonce, self._nonce, self.node_id, self.server_id)
        hello = Hello(
            node_id=self.node_id,
            nonce=self._nonce,
            mac=mac,
            members=self._members,
            groups=self._groups,
        )
        return encode_handshake(hello)

    @property
    def server_members(self) -> Members | None:
        """The node list the server sent (None: an earlier release that sends none, unchecked)."""
        return self._server_members

    @property
    def server_groups(self) -> Groups | None:
        """The groups the server sent (None: an earlier release that sends none, unchecked)."""
        return self._server_groups

    def receive_welcome(self, data: object) -> None:
        """Check the server's proof over our nonce."""
        if self._server_nonce is None or self.authenticated:
            raise AuthError("welcome out of order")
        welcome = decode_welcome(data)
        expected = server_mac(
            self._secret, self._server_nonce, self._nonce, self.node_id, self.server_id
        )
        if not hmac.compare_digest(expected, welcome.mac):
            raise AuthError(
                f"node {self.server_id} failed to prove it knows the cluster secret "
                "(different secret in its config?)"
            )
        if self._members is not None:
            check_same_members(self.node_id, self._members, self.server_id, self._server_members)
        if self._groups is not None:
            check_same_machines(self.node_id, self._groups, self.server_id, self._server_groups)
        self.authenticated = True
