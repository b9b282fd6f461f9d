"""The peer handshake, as pure functions: who can authenticate, and what is refused.

(The handshake *timeout* is enforced by the IO around it: see test_consumer.py for the server side
and test_link.py for the client side.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import msgpack
import pytest

from consensus.core.errors import RemoteProtocolError
from consensus.transport.auth import (
    EARLIER_RELEASES_MAX_FRAME,
    MAX_HANDSHAKE_FRAME,
    NONCE_SIZE,
    UNCHECKED,
    UNCHECKED_GROUPS,
    AuthError,
    ClientHandshake,
    GroupsDiffer,
    Hello,
    MembersDiffer,
    ServerHandshake,
    Welcome,
    as_groups,
    check_fits,
    client_mac,
    decode_challenge,
    decode_hello,
    encode_handshake,
    groups_to_send,
    handshake_size,
    server_mac,
    unchecked,
)

SECRET = b"cluster-secret"
MEMBERS = {1, 2, 3}


def server(node_id: int = 2, secret: bytes = SECRET, **kwargs: object) -> ServerHandshake:
    return ServerHandshake(secret, node_id=node_id, members=MEMBERS, **kwargs)  # type: ignore[arg-type]


def client(node_id: int = 1, server_id: int = 2, secret: bytes = SECRET) -> ClientHandshake:
    return ClientHandshake(secret, node_id=node_id, server_id=server_id)


def test_successful_handshake_authenticates_both_sides() -> None:
    srv, cli = server(), client()
    hello = cli.receive_challenge(srv.challenge())
    peer_id, welcome = srv.receive_hello(hello)
    cli.receive_welcome(welcome)
    assert peer_id == 1
    assert srv.peer_id == 1
    assert cli.authenticated


def test_mac_material_is_the_documented_string() -> None:
    ns, nc = b"\x01" * NONCE_SIZE, b"\x02" * NONCE_SIZE
    expected = hmac.new(
        SECRET, f"paxos-peer-v1|{ns.hex()}|{nc.hex()}|1|2".encode(), hashlib.sha256
    ).digest()
    assert client_mac(SECRET, ns, nc, client_id=1, server_id=2) == expected
    swapped = hmac.new(
        SECRET, f"paxos-peer-v1|{nc.hex()}|{ns.hex()}|2|1".encode(), hashlib.sha256
    ).digest()
    assert server_mac(SECRET, ns, nc, client_id=1, server_id=2) == swapped
    assert swapped != expected


def test_wrong_secret_is_refused_by_the_server() -> None:
    srv, cli = server(), client(secret=b"other secret")
    hello = cli.receive_challenge(srv.challenge())
    with pytest.raises(AuthError, match="bad MAC"):
        srv.receive_hello(hello)
    assert srv.peer_id is None


def test_server_with_wrong_secret_is_refused_by_the_client() -> None:
    srv, cli = server(secret=b"other secret"), client()
    # The server cannot verify the client, so fake its side: a server that skips verification
    # and answers with a MAC under its own (wrong) secret.
    challenge = decode_challenge(srv.challenge())
    hello = decode_hello(cli.receive_challenge(srv.challenge()))
    forged = server_mac(b"other secret", challenge.nonce, hello.nonce, 1, 2)
    with pytest.raises(AuthError, match="failed to prove"):
        cli.receive_welcome(encode_handshake(Welcome(mac=forged)))
    assert not cli.authenticated


def test_claiming_another_node_id_is_refused() -> None:
    """Node 1 knows the secret, but the MAC binds its id: it cannot pose as node 3."""
    srv, cli = server(), client(node_id=1)
    hello = decode_hello(cli.receive_challenge(srv.challenge()))
    lie = encode_handshake(Hello(node_id=3, nonce=hello.nonce, mac=hello.mac))
    with pytest.raises(AuthError, match="bad MAC from a peer claiming to be node 3"):
        srv.receive_hello(lie)


def test_unknown_member_is_refused_even_with_the_right_secret() -> None:
    srv, cli = server(), client(node_id=7)
    with pytest.raises(AuthError, match="node 7 is not a member"):
        srv.receive_hello(cli.receive_challenge(srv.challenge()))


def test_link_to_itself_is_refused() -> None:
    srv, cli = server(node_id=2), client(node_id=2, server_id=2)
    with pytest.raises(AuthError, match="this node"):
        srv.receive_hello(cli.receive_challenge(srv.challenge()))


def test_replayed_hello_is_refused() -> None:
    """A Hello recorded from one connection answers that connection's nonce only."""
    first = server()
    recorded = client().receive_challenge(first.challenge())
    first.receive_hello(recorded)  # genuine the first time
    with pytest.raises(AuthError, match="bad MAC"):
        server().receive_hello(recorded)  # a new connection has a fresh nonce


def test_replayed_welcome_is_refused() -> None:
    srv = server()
    old_client = client()
    _, recorded_welcome = srv.receive_hello(old_client.receive_challenge(srv.challenge()))
    new_client = client()
    new_client.receive_challenge(srv.challenge())  # same server nonce, fresh client nonce
    with pytest.raises(AuthError, match="failed to prove"):
        new_client.receive_welcome(recorded_welcome)


def test_a_server_verifies_one_hello_only() -> None:
    srv = server()
    hello = client().receive_challenge(srv.challenge())
    srv.receive_hello(hello)
    with pytest.raises(AuthError, match="already used"):
        srv.receive_hello(hello)


def test_client_refuses_a_different_node_at_the_address() -> None:
    with pytest.raises(AuthError, match="expected node 3 at this address, but node 2"):
        client(server_id=3).receive_challenge(server(node_id=2).challenge())


def test_echoed_nonces_are_refused() -> None:
    nonce = b"\x05" * NONCE_SIZE
    srv = server(nonce=nonce)
    cli = ClientHandshake(SECRET, node_id=1, server_id=2, nonce=nonce)
    with pytest.raises(AuthError, match="echoed"):
        cli.receive_challenge(srv.challenge())


def test_welcome_before_challenge_is_refused() -> None:
    with pytest.raises(AuthError, match="out of order"):
        client().receive_welcome(b"")


@pytest.mark.parametrize(
    ("frame", "match"),
    [
        ("text", "must be binary"),
        (b"\xc1", "not msgpack"),
        (b"x" * (MAX_HANDSHAKE_FRAME + 1), "too large"),
        (msgpack.packb([1, 2]), "must be a map"),
        (msgpack.packb({"v": 2, "t": "hello"}), "unsupported handshake version"),
        (msgpack.packb({"v": True, "t": "hello"}), "unsupported handshake version"),
        (msgpack.packb({"v": 1, "t": "welcome"}), "expected a hello frame"),
        (
            msgpack.packb({"v": 1, "t": "hello", "node_id": True, "nonce": b"", "mac": b""}),
            "node_id must be",
        ),
        (
            msgpack.packb({"v": 1, "t": "hello", "node_id": 1, "nonce": b"short", "mac": b""}),
            "nonce must be 32 bytes",
        ),
        (
            msgpack.packb(
                {"v": 1, "t": "hello", "node_id": 1, "nonce": "x" * NONCE_SIZE, "mac": b""}
            ),
            "nonce must be 32 bytes",
        ),
        (
            msgpack.packb({"v": 1, "t": "hello", "node_id": 1, "nonce": b"n" * 32, "mac": b"m"}),
            "mac must be 32 bytes",
        ),
    ],
)
def test_malformed_hello_frames_are_auth_errors(frame: object, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        server().receive_hello(frame)


def test_auth_error_is_a_remote_protocol_error() -> None:
    assert issubclass(AuthError, RemoteProtocolError)


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        ServerHandshake(b"", node_id=1, members={1, 2})
    with pytest.raises(ValueError, match="secret"):
        ClientHandshake(b"", node_id=1, server_id=2)


# -- the member lists (a majority counted over different lists can choose two values) ----------


def test_a_peer_whose_config_lists_other_nodes_is_refused_by_the_server() -> None:
    srv = server()
    cli = ClientHandshake(SECRET, node_id=1, server_id=2, members={1, 2, 3, 4, 5})
    with pytest.raises(AuthError) as refused:
        srv.receive_hello(cli.receive_challenge(srv.challenge()))
    message = str(refused.value)
    assert "node lists differ: node 1 lists 1, 2, 3, 4, 5, node 2 lists 1, 2, 3" in message
    assert "every node must list the same nodes" in message
    assert srv.peer_id is None


def test_a_server_whose_config_lists_other_nodes_is_refused_by_the_client() -> None:
    """Against a server that does not check (an older release), the client refuses."""
    srv = ServerHandshake(SECRET, node_id=2, members={1, 2})
    cli = ClientHandshake(SECRET, node_id=1, server_id=2, members=MEMBERS)
    hello = cli.receive_challenge(srv.challenge())
    old_hello = encode_handshake(dataclasses.replace(decode_hello(hello), members=None))
    _peer_id, welcome = srv.receive_hello(old_hello)
    with pytest.raises(MembersDiffer, match="node 2 lists 1, 2, node 1 lists 1, 2, 3;"):
        cli.receive_welcome(welcome)
    assert not cli.authenticated


def test_the_same_members_in_any_order_and_peers_that_send_none_are_accepted() -> None:
    srv = server()
    cli = ClientHandshake(SECRET, node_id=1, server_id=2, members=[3, 1, 2])
    cli.receive_welcome(srv.receive_hello(cli.receive_challenge(srv.challenge()))[1])
    assert cli.authenticated
    srv, old = server(), client()  # an older release's client: no list sent, none checked
    old.receive_welcome(srv.receive_hello(old.receive_challenge(srv.challenge()))[1])
    assert old.authenticated and srv.peer_id == 1
    assert decode_challenge(server().challenge()).members == (1, 2, 3)


def test_members_are_compared_only_after_the_peer_proved_the_secret() -> None:
    """A stranger learns nothing from the refusal: a wrong MAC is refused as such."""
    cli = ClientHandshake(b"wrong secret", node_id=1, server_id=2, members={1, 2, 3, 4})
    srv = server()
    with pytest.raises(AuthError, match="bad MAC"):
        srv.receive_hello(cli.receive_challenge(srv.challenge()))


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ("1,2,3", "members must be a non-empty list"),
        ([], "members must be a non-empty list"),
        ([1, -2], "members must be a non-empty list"),
        ([1, "2"], "members must be a non-empty list"),
    ],
)
def test_malformed_member_lists_are_auth_errors(members: object, match: str) -> None:
    srv = server()
    hello = decode_hello(client().receive_challenge(srv.challenge()))
    body = msgpack.unpackb(encode_handshake(hello)) | {"members": members}
    with pytest.raises(AuthError, match=match):
        srv.receive_hello(msgpack.packb(body))


def test_each_side_knows_whether_the_peer_sent_a_list() -> None:
    """A link to a peer of an earlier release is logged as unchecked (``UNCHECKED``): otherwise
    nobody could tell, after an upgrade, whether the comparison runs at all."""
    srv = server()
    cli = ClientHandshake(SECRET, node_id=1, server_id=2, members=MEMBERS)
    cli.receive_welcome(srv.receive_hello(cli.receive_challenge(srv.challenge()))[1])
    assert (srv.peer_members, cli.server_members) == ((1, 2, 3), (1, 2, 3))
    srv, old = server(), client()  # an earlier release's client sends none
    old.receive_welcome(srv.receive_hello(old.receive_challenge(srv.challenge()))[1])
    assert srv.peer_members is None
    assert "not compared" in UNCHECKED


# -- the groups' state machines (two machines for one group: the replicas diverge) --------------

GROUPS = [(1, "kv"), (3, "mycounter")]


def grouped_server(groups: object = GROUPS, node_id: int = 1) -> ServerHandshake:
    return ServerHandshake(SECRET, node_id=node_id, members=MEMBERS, groups=groups)  # type: ignore[arg-type]


def grouped_client(groups: object, node_id: int = 3, server_id: int = 1) -> ClientHandshake:
    return ClientHandshake(
        SECRET,
        node_id=node_id,
        server_id=server_id,
        members=MEMBERS,
        groups=groups,  # type: ignore[arg-type]
    )


DIFFER = (
    'group state machines differ: group 3 runs "mycounter" on node 1 and "kv" on node 3; '
    "every node must run the same state machine for a group"
)


def test_a_peer_running_another_machine_for_a_group_is_refused_by_the_server() -> None:
    srv = grouped_server()
    cli = grouped_client([(1, "kv"), (3, "kv")])
    with pytest.raises(GroupsDiffer) as refused:
        srv.receive_hello(cli.receive_challenge(srv.challenge()))
    assert str(refused.value) == DIFFER
    assert refused.value.peer_id == 3  # it proved the secret: the log may name it
    assert srv.peer_id is None


def test_a_server_running_another_machine_for_a_group_is_refused_by_the_client() -> None:
    """Against a server that does not compare (it got no group list), the client refuses with
    the very line the server would have logged: both logs read the same."""
    srv = grouped_server()
    cli = grouped_client([(3, "kv"), (1, "kv")])
    hello = cli.receive_challenge(srv.challenge())
    no_groups = encode_handshake(dataclasses.replace(decode_hello(hello), groups=None))
    _peer_id, welcome = srv.receive_hello(no_groups)
    with pytest.raises(GroupsDiffer) as refused:
        cli.receive_welcome(welcome)
    assert str(refused.value) == DIFFER
    assert refused.value.peer_id == 1
    assert not cli.authenticated


def test_every_differing_group_is_named_up_to_a_few() -> None:
    ours = [(g, "kv") for g in range(1, 8)]
    srv = grouped_server(ours, node_id=2)
    cli = grouped_client([(g, "log") for g in range(1, 8)], node_id=1, server_id=2)
    with pytest.raises(GroupsDiffer) as refused:
        srv.receive_hello(cli.receive_challenge(srv.challenge()))
    message = str(refused.value)
    assert message.startswith(
        'group state machines differ: group 1 runs "log" on node 1 and "kv" on node 2, '
        'group 2 runs "log" on node 1 and "kv" on node 2, group 3 runs'
    )
    assert "group 4" not in message and " and 4 more group(s); every node must" in message


def test_groups_only_one_side_lists_and_peers_that_send_none_are_accepted() -> None:
    """A group is added by editing the configs and restarting the nodes one by one: meanwhile
    some nodes list it and others do not."""
    srv = grouped_server([(1, "kv"), (3, "mycounter")])
    cli = grouped_client([(1, "kv"), (2, "log")])
    cli.receive_welcome(srv.receive_hello(cli.receive_challenge(srv.challenge()))[1])
    assert cli.authenticated and srv.peer_id == 3
    assert srv.peer_groups == ((1, "kv"), (2, "log"))
    assert cli.server_groups == ((1, "kv"), (3, "mycounter"))
    # An earlier release sends no group list (nor a node list) and is not compared, either way.
    srv, old = grouped_server(), client(node_id=3, server_id=1)
    old.receive_welcome(srv.receive_hello(old.receive_challenge(srv.challenge()))[1])
    assert old.authenticated and srv.peer_groups is None
    old_server = ServerHandshake(SECRET, node_id=1, members=MEMBERS)  # sends no groups
    cli = grouped_client([(1, "log")])
    cli.receive_welcome(old_server.receive_hello(cli.receive_challenge(old_server.challenge()))[1])
    assert cli.authenticated and cli.server_groups is None
    assert decode_challenge(old_server.challenge()).groups is None


def test_the_link_up_line_says_when_groups_were_not_compared() -> None:
    assert unchecked((1, 2, 3), ((1, "kv"),)) == ""
    assert unchecked(None, None) == UNCHECKED
    assert unchecked((1, 2, 3), None) == UNCHECKED_GROUPS
    assert "state machines not compared" in UNCHECKED_GROUPS


def test_machines_are_compared_only_after_the_peer_proved_the_secret() -> None:
    cli = ClientHandshake(
        b"wrong secret", node_id=3, server_id=1, members=MEMBERS, groups=[(3, "kv")]
    )
    srv = grouped_server()
    with pytest.raises(AuthError, match="bad MAC") as refused:
        srv.receive_hello(cli.receive_challenge(srv.challenge()))
    assert not isinstance(refused.value, GroupsDiffer)


def test_a_machine_name_is_quoted_on_one_line_and_cut_short() -> None:
    srv = grouped_server([(3, "kv")])
    cli = grouped_client([(3, "evil\nnode 9: forged line" + "x" * 200)])
    with pytest.raises(GroupsDiffer) as refused:
        srv.receive_hello(cli.receive_challenge(srv.challenge()))
    message = str(refused.value)
    assert "\n" not in message and '"evil\\nnode 9: forged line' in message
    assert "x" * 100 not in message and '..." on node 3;' in message


@pytest.mark.parametrize(
    "groups",
    [
        "1:kv",
        {"1": "kv"},
        [1, 2],
        [[1]],
        [[1, "kv", "extra"]],
        [[-1, "kv"]],
        [[True, "kv"]],
        [["1", "kv"]],
        [[1, ""]],
        [[1, b"kv"]],
        [[1, None]],
    ],
)
def test_malformed_group_lists_are_auth_errors(groups: object) -> None:
    srv = grouped_server()
    hello = decode_hello(grouped_client([(1, "kv")]).receive_challenge(srv.challenge()))
    body = msgpack.unpackb(encode_handshake(hello)) | {"groups": groups}
    with pytest.raises(AuthError, match="groups must be a list of"):
        srv.receive_hello(msgpack.packb(body))


def test_a_group_listed_twice_is_an_auth_error() -> None:
    srv = grouped_server()
    hello = decode_hello(grouped_client([(1, "kv")]).receive_challenge(srv.challenge()))
    body = msgpack.unpackb(encode_handshake(hello)) | {"groups": [[1, "kv"], [1, "log"]]}
    with pytest.raises(AuthError, match="groups lists a group id twice"):
        srv.receive_hello(msgpack.packb(body))


def test_a_group_list_is_bounded_by_the_frame_size() -> None:
    """A peer cannot make this node decode an unbounded list: the frame is refused by its size
    before it is parsed. A config whose own lists do not fit is refused at start instead."""
    srv = grouped_server()
    hello = decode_hello(grouped_client([(1, "kv")]).receive_challenge(srv.challenge()))
    huge = [[g, "kv"] for g in range(MAX_HANDSHAKE_FRAME // 4)]
    body = msgpack.unpackb(encode_handshake(hello)) | {"groups": huge}
    with pytest.raises(AuthError, match="too large"):
        srv.receive_hello(msgpack.packb(body))
    with pytest.raises(ValueError, match="fewer groups or shorter state machine names"):
        check_fits(1, MEMBERS, huge)  # type: ignore[arg-type]
    check_fits(1, MEMBERS, [(g, "a-state-machine") for g in range(1, 1001)])  # 1000 groups fit


def test_a_group_list_too_long_for_earlier_releases_is_not_sent() -> None:
    """Nodes of the release before the group check refuse handshake frames over 4 KiB: a node
    whose list would exceed that sends none (and compares none), so that a cluster with many
    groups can still be upgraded node by node."""
    few = as_groups([(g, "kv") for g in range(1, 11)])
    many = as_groups([(g, "a-state-machine-name") for g in range(1, 1001)])
    assert groups_to_send(1, MEMBERS, few) == few
    assert handshake_size(1, MEMBERS, few) <= EARLIER_RELEASES_MAX_FRAME
    assert handshake_size(1, MEMBERS, many) > EARLIER_RELEASES_MAX_FRAME
    assert groups_to_send(1, MEMBERS, many) is None
    assert groups_to_send(1, MEMBERS, None) is None


@pytest.mark.parametrize(
    "body",
    [
        {"v": "x" * 60_000, "t": "hello"},
        {"v": b"x" * 60_000, "t": "hello"},
        {"v": [list(range(5000))] * 2, "t": "hello"},
        {"v": 1, "t": "y" * 60_000},
    ],
    ids=["str-version", "bytes-version", "list-version", "type"],
)
def test_a_refusal_quotes_what_was_sent_at_a_bounded_size(body: dict[str, object]) -> None:
    """The refusal is logged: quoting a 60 KB value whole let anyone who reaches the port write
    six times what they sent into the node's log."""
    with pytest.raises(AuthError) as refused:
        server().receive_hello(msgpack.packb(body))
    assert len(str(refused.value)) < 120, str(refused.value)
