"""Mutual authentication of peer links: HMAC-SHA256 challenge-response over the cluster secret.

Theory of operation
-------------------
Every node of a cluster knows the shared ``secret`` (DESIGN.md §5). When node C opens a link to
node S, before any Paxos frame flows::

    S -> C   Challenge {v, t="challenge", node_id=S, nonce=Ns, members=[...]}
    C -> S   Hello     {v, t="hello", node_id=C, nonce=Nc, mac=MAC("...|Ns|Nc|C|S"), members=[...]}
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

What this does not do: it authenticates the connection, not each frame. Against an attacker who
can rewrite TCP traffic on the cluster network, run the peer port behind TLS (wss://) or on a
private network.

Everything here is pure (no IO, no clock): the consumer and the link feed bytes in and send the
bytes that come out, so every rule above is a unit test.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import msgpack

from consensus.core.errors import RemoteProtocolError

__all__ = [
    "HANDSHAKE_TIMEOUT",
    "HANDSHAKE_VERSION",
    "NONCE_SIZE",
    "AuthError",
    "Challenge",
    "ClientHandshake",
    "Hello",
    "UNCHECKED",
    "MembersDiffer",
    "ServerHandshake",
    "Welcome",
    "check_same_members",
    "client_mac",
    "decode_challenge",
    "decode_hello",
    "decode_welcome",
    "encode_handshake",
    "new_nonce",
    "server_mac",
]

HANDSHAKE_VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32
HANDSHAKE_TIMEOUT = 5.0
"""Seconds a link may spend between the TCP/websocket open and the Welcome; then it is closed."""
MAX_HANDSHAKE_FRAME = 4096
"""Handshake frames are ~150 bytes plus the member list; anything much larger is not one."""

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


@dataclass(frozen=True, slots=True)
class Challenge:
    node_id: int
    nonce: bytes
    members: Members | None = None
    """The server's node ids; None from a release that did not send them."""


@dataclass(frozen=True, slots=True)
class Hello:
    node_id: int
    nonce: bytes
    mac: bytes
    members: Members | None = None
    """The client's node ids; None from a release that did not send them."""


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
        raise AuthError(f"unsupported handshake version {version!r} (this node speaks 1)")
    if body.get("t") != type_name:
        raise AuthError(f"expected a {type_name} frame, got {body.get('t')!r}")
    return body


def decode_challenge(data: object) -> Challenge:
    """Parse a Challenge; raise ``AuthError`` for anything else."""
    body = _decode_body(data, "challenge")
    return Challenge(
        node_id=_node_id(body), nonce=_blob(body, "nonce", NONCE_SIZE), members=_members(body)
    )


def decode_hello(data: object) -> Hello:
    """Parse a Hello; raise ``AuthError`` for anything else."""
    body = _decode_body(data, "hello")
    return Hello(
        node_id=_node_id(body),
        nonce=_blob(body, "nonce", NONCE_SIZE),
        mac=_blob(body, "mac", MAC_SIZE),
        members=_members(body),
    )


def decode_welcome(data: object) -> Welcome:
    """Parse a Welcome; raise ``AuthError`` for anything else."""
    return Welcome(mac=_blob(_decode_body(data, "welcome"), "mac", MAC_SIZE))


class MembersDiffer(AuthError):
    """An authenticated peer's cluster config lists other nodes than ours. The message names
    both nodes by id, so it reads the same in either node's log (it also travels as the close
    reason)."""

    def __init__(self, message: str, peer_id: int) -> None:
        super().__init__(message)
        self.peer_id = peer_id


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


UNCHECKED = " (it sent no node list, as releases before the check did: not compared)"
"""Appended to a link-up log line when the peer's node list could not be compared."""


# ---------------------------------------------------------------------------------------------
# The two roles, as small sans-IO state machines.
# ---------------------------------------------------------------------------------------------


class ServerHandshake:
    """The accepting side (the consumer). Usage::

    hs = ServerHandshake(secret, node_id=2, members={1, 2, 3})
    send(hs.challenge())
    peer_id, welcome = hs.receive_hello(first_frame)   # AuthError -> close the link
    send(welcome)
    """

    def __init__(
        self,
        secret: bytes,
        *,
        node_id: int,
        members: Collection[int],
        nonce: bytes | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self.node_id = node_id
        self._members = as_members(members)
        self._nonce = nonce if nonce is not None else new_nonce()
        self.peer_id: int | None = None
        """The authenticated peer, once receive_hello() succeeded."""
        self.peer_members: Members | None = None
        """The node list the peer sent (None: an earlier release that sends none, unchecked)."""
        self._done = False

    def challenge(self) -> bytes:
        challenge = Challenge(node_id=self.node_id, nonce=self._nonce, members=self._members)
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
        self.peer_id, self.peer_members = hello.node_id, hello.members
        mac = server_mac(self._secret, self._nonce, hello.nonce, hello.node_id, self.node_id)
        return hello.node_id, encode_handshake(Welcome(mac=mac))


class ClientHandshake:
    """The connecting side (a PeerLink). Usage::

    hs = ClientHandshake(secret, node_id=1, server_id=2, members={1, 2, 3})
    send(hs.receive_challenge(first_frame))
    hs.receive_welcome(second_frame)                   # AuthError -> close, back off

    Without ``members`` it sends no list and checks none (as releases before the check did).
    """

    def __init__(
        self,
        secret: bytes,
        *,
        node_id: int,
        server_id: int,
        members: Collection[int] | None = None,
        nonce: bytes | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self.node_id = node_id
        self.server_id = server_id
        self._members = None if members is None else as_members(members)
        self._nonce = nonce if nonce is not None else new_nonce()
        self._server_nonce: bytes | None = None
        self._server_members: Members | None = None
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
        self._server_members = challenge.members  # checked once the server proved the secret
        mac = client_mac(self._secret, challenge.nonce, self._nonce, self.node_id, self.server_id)
        hello = Hello(node_id=self.node_id, nonce=self._nonce, mac=mac, members=self._members)
        return encode_handshake(hello)

    @property
    def server_members(self) -> Members | None:
        """The node list the server sent (None: an earlier release that sends none, unchecked)."""
        return self._server_members

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
        self.authenticated = True
