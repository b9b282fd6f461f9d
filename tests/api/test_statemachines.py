"""The state machine API: the registry behaves like Django admin's, discovery finds (and does not
half-import) ``statemachines.py`` modules, the seed's callback style works, and the KV machine
validates deterministically."""

from __future__ import annotations

import json
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from django.test import override_settings

from consensus.checks import check_state_machines
from consensus.config import ClusterConfig, GroupSpec, NodeAddress
from consensus.registry import (
    AlreadyRegistered,
    NotRegistered,
    StateMachineRegistry,
    autodiscover,
    register,
    registry,
)
from consensus.statemachine import (
    ApplyContext,
    CallbackStateMachine,
    StateMachine,
    decode_result,
    encode_result,
    portable_result,
)
from tests.fixtures.statements import traced_statements


class Counter(StateMachine):
    durable = False

    def __init__(self, group_id: int) -> None:
        super().__init__(group_id)
        self.total = 0

    def apply(self, command: str, context: ApplyContext) -> int:
        self.total += int(command)
        return self.total


class SeedKvCallback:
    """The seed's ``KvCallback``, verbatim in spirit: no base class, ``callback(msg)``."""

    def __init__(self) -> None:
        self.kv: dict[str, str] = {}

    def callback(self, msg: str) -> str | None:
        bean = json.loads(msg)
        if bean["type"] == "get":
            return self.kv.get(bean["key"])
        if bean["type"] == "put":
            self.kv[bean["key"]] = bean["value"]
            return "ok"
        if bean["type"] == "delete":
            self.kv.pop(bean["key"], None)
            return "ok"
        return None


def context(instance: int = 1) -> ApplyContext:
    return ApplyContext(group_id=1, instance=instance, request_id=f"r{instance}")


def test_register_create_unregister() -> None:
    site = StateMachineRegistry()
    assert site.register("counter", Counter) is Counter
    assert site.is_registered("counter") and site.names() == ["counter"]
    first, second = site.create("counter", 1), site.create("counter", 2)
    assert first is not second and (first.group_id, second.group_id) == (1, 2)
    assert first.apply("5", context()) == 5 and second.apply("1", context()) == 1
    site.unregister("counter")
    assert not site.is_registered("counter")


def test_errors_match_django_admin() -> None:
    site = StateMachineRegistry()
    site.register("counter", Counter)
    with pytest.raises(AlreadyRegistered, match="already registered"):
        site.register("counter", Counter)  # admin raises even for the same class
    with pytest.raises(NotRegistered, match="'nope' is not registered"):
        site.unregister("nope")
    with pytest.raises(NotRegistered, match="registered: counter"):
        site.create("nope", 1)
    with pytest.raises(ValueError, match="non-empty name"):
        site.register("", Counter)
    with pytest.raises(TypeError, match="register a class"):
        site.register("x", Counter(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subclass StateMachine or define callback"):
        site.register("x", dict)
    assert site.names() == ["counter"]


def test_decorator_returns_the_class_unchanged() -> None:
    site = StateMachineRegistry()
    decorated = register("seed", site=site)(SeedKvCallback)
    assert decorated is SeedKvCallback
    with pytest.raises(ValueError, match="needs the state machine's name"):
        register("")


def test_seed_callback_class_is_adapted() -> None:
    site = StateMachineRegistry()
    site.register("seed", SeedKvCallback)
    machine = site.create("seed", 1)
    assert isinstance(machine, CallbackStateMachine) and machine.durable is False
    put = json.dumps({"type": "put", "key": "name", "value": "Mike"})
    assert machine.apply(put, context(1)) == "ok"
    assert machine.apply(json.dumps({"type": "get", "key": "name", "value": ""}), context(2)) == (
        "Mike"
    )
    assert type(machine).__name__ == "SeedKvCallbackAdapter"


def test_results_round_trip_as_json() -> None:
    for result in (None, "ok", 3, {"key": "k", "value": None}, [1, "a"]):
        assert decode_result(encode_result(result)) == result
    assert decode_result("") is None


def test_default_registry_has_kv_and_log() -> None:
    assert {"kv", "log"} <= set(registry.names())


#
# Discovery
#


@pytest.fixture
def app_folder(tmp_path: Path):
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("smtest_")]:
            del sys.modules[name]


def make_app(folder: Path, name: str, statemachines: str | None) -> str:
    package = folder / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    if statemachines is not None:
        (package / "statemachines.py").write_text(textwrap.dedent(statemachines))
    return name


def test_discovery_imports_statemachines_modules(app_folder: Path, settings) -> None:
    good = make_app(
        app_folder,
        "smtest_good",
        """
        from consensus.registry import register
        from consensus.statemachine import LogOnlyStateMachine

        @register("smtest-good")
        class Good(LogOnlyStateMachine):
            pass
        """,
    )
    missing = make_app(app_folder, "smtest_missing", None)
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, good, missing]):
            # Installing the apps ran ConsensusConfig.ready() -> autodiscover(); the app without
            # statemachines.py was skipped silently. Running it again imports nothing new.
            assert registry.is_registered("smtest-good")
            autodiscover()
    finally:
        if registry.is_registered("smtest-good"):
            registry.unregister("smtest-good")


def test_a_broken_module_raises_and_leaves_the_registry_as_it_was(
    app_folder: Path, settings
) -> None:
    broken = make_app(
        app_folder,
        "smtest_broken",
        """
        from consensus.registry import register
        from consensus.statemachine import LogOnlyStateMachine

        @register("smtest-half")
        class Half(LogOnlyStateMachine):
            pass

        raise RuntimeError("bug in the user's module")
        """,
    )
    before = registry.names()
    # Installing the app runs ConsensusConfig.ready(), i.e. autodiscover(), which must raise.
    with (
        pytest.raises(RuntimeError, match="bug in the user's module"),
        override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, broken]),
    ):
        pass  # pragma: no cover
    assert registry.names() == before
    assert not registry.is_registered("smtest-half")


def test_an_import_error_inside_the_module_is_not_mistaken_for_a_missing_module(
    app_folder: Path, settings
) -> None:
    broken = make_app(app_folder, "smtest_importerror", "import smtest_no_such_dependency\n")
    with (
        pytest.raises(ModuleNotFoundError, match="smtest_no_such_dependency"),
        override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, broken]),
    ):
        pass  # pragma: no cover


#
# The system check
#


def cluster_with(*groups: GroupSpec) -> ClusterConfig:
    return ClusterConfig(
        path=Path("cluster.json"),
        nodes=(NodeAddress(1, "127.0.0.1", 33333),),
        my_id=1,
        secret="s",
        groups=groups,
    )


def test_check_reports_a_group_with_an_unregistered_state_machine(settings) -> None:
    settings.PAXOS_CLUSTER = cluster_with(GroupSpec(1, "kv"), GroupSpec(2, "nosuch"))
    errors = check_state_machines()
    assert [error.id for error in errors] == ["consensus.E001"]
    assert "group 2" in errors[0].msg and "'nosuch'" in errors[0].msg


def test_check_passes_for_registered_machines(settings) -> None:
    settings.PAXOS_CLUSTER = cluster_with(GroupSpec(1, "kv"), GroupSpec(2, "log"))
    assert check_state_machines() == []


def test_check_warns_about_a_replicated_model_staff_could_edit() -> None:
    """A plain ``ModelAdmin`` for a state machine's model let a staff user change one node's
    copy of the replicated state (a review did: the nodes then disagreed for good)."""
    from django.contrib import admin

    from consensus.checks import check_replicated_models_in_admin
    from kvstore.admin import EntryAdmin
    from kvstore.models import Entry

    assert check_replicated_models_in_admin() == []  # kvstore's is ReadOnlyAdmin
    admin.site.unregister(Entry)
    try:
        admin.site.register(Entry)
        (warning,) = check_replicated_models_in_admin()
    finally:
        admin.site.unregister(Entry)
        admin.site.register(Entry, EntryAdmin)
    assert warning.id == "consensus.W002"
    assert "kvstore.Entry is in the admin with ModelAdmin" in warning.msg
    assert "ReadOnlyAdmin" in warning.hint


#
# The KV state machine
#


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "JSON object"),
        ('{"op": "rename", "key": "k"}', "unknown op"),
        ('{"op": "put", "value": "v"}', "key must be a non-empty string"),
        ('{"op": "put", "key": "k"}', "value must be a string"),
        ('{"op": "put", "key": "k", "value": 3}', "value must be a string"),
        ('{"op": "put", "key": "k\\u0000", "value": "v"}', "NUL"),
        ('{"op": "put", "key": "k", "value": "\\ud800"}', "lone surrogate"),
        ('{"op": "cas", "key": "k", "expected": 1, "value": "v"}', "expected must be a string"),
        (json.dumps({"op": "put", "key": "k" * 1025, "value": "v"}), "at most 1024"),
    ],
)
def test_kv_rejects_bad_commands_deterministically(command: str, message: str) -> None:
    machine = registry.create("kv", 1)
    result = machine.apply(command, context())
    assert message in result["error"]


@pytest.mark.django_db
def test_kv_operations_and_seed_format() -> None:
    from kvstore.models import Entry

    machine = registry.create("kv", 1)
    other = registry.create("kv", 2)
    assert machine.apply('{"type": "put", "key": "name", "value": "Mike"}', context(1)) == {
        "key": "name",
        "value": "Mike",
    }
    other.apply('{"type": "put", "key": "name", "value": "Neo"}', context(1))
    assert machine.apply('{"type": "get", "key": "name", "value": ""}', context(2)) == {
        "key": "name",
        "value": "Mike",
        "found": True,
    }
    cas = '{"op": "cas", "key": "name", "expected": "Mike", "value": "Bob"}'
    assert machine.apply(cas, context(3))["succeeded"] is True
    assert machine.apply(cas, context(4)) == {"key": "name", "succeeded": False, "value": "Bob"}
    absent = '{"op": "cas", "key": "new", "expected": null, "value": "x"}'
    assert machine.apply(absent, context(5))["succeeded"] is True
    assert Entry.objects.get(group_id=1, key="new").instance == 5
    assert machine.apply('{"type": "delete", "key": "name"}', context(6)) == {
        "key": "name",
        "deleted": True,
    }
    assert Entry.objects.get(group_id=2, key="name").value == "Neo"


def test_the_readme_example_app(settings) -> None:
    """examples/counter, installed the README's way, registers "counter" and counts."""
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "examples.counter"]):
            machine = registry.create("counter", 3)
            assert machine.durable is False
            assert machine.apply('{"name": "visits", "add": 2}', context(1))["value"] == 2
            assert machine.apply('{"name": "visits", "add": 3}', context(2)) == {
                "name": "visits",
                "value": 5,
                "instance": 2,
            }
            assert "error" in machine.apply("nonsense", context(3))
    finally:
        if registry.is_registered("counter"):
            registry.unregister("counter")
        sys.modules.pop("examples.counter.statemachines", None)


@pytest.mark.django_db
def test_kv_batch_gives_the_results_of_one_apply_after_another() -> None:
    """``apply_batch`` (group 2) must match sequential ``apply`` (group 1): results and state."""
    import random

    from kvstore.models import Entry

    rng = random.Random(7)
    keys = ["a", "b", "c", "d"]
    commands = []
    for instance in range(1, 400):
        op = rng.choice(["put", "get", "delete", "cas", "cas", "bad"])
        key = rng.choice(keys)
        if op == "bad":
            command = rng.choice(["{", '{"op": "put", "key": "k"}', '{"op": "zap", "key": "a"}'])
        else:
            data = {"type" if rng.random() < 0.3 else "op": op, "key": key}
            if op in {"put", "cas"}:
                data["value"] = str(rng.randrange(4))
            if op == "cas":
                data["expected"] = rng.choice([None, "0", "1", "2", "3"])
            command = json.dumps(data)
        commands.append((command, instance))
    one_by_one = registry.create("kv", 1)
    batched = registry.create("kv", 2)
    expected = [one_by_one.apply(c, ApplyContext(1, i, f"r{i}")) for c, i in commands]
    got = []
    for start in range(0, len(commands), 37):  # several batches, a key touched many times in each
        chunk = commands[start : start + 37]
        got += batched.apply_batch([(c, ApplyContext(2, i, f"r{i}")) for c, i in chunk])
    assert got == expected
    state = {
        group: sorted(Entry.objects.filter(group_id=group).values_list("key", "value", "instance"))
        for group in (1, 2)
    }
    assert state[1] == state[2]


@pytest.mark.django_db
def test_kv_batch_reads_only_keys_that_a_result_depends_on() -> None:
    """A put's result does not depend on the old value: a put-only batch reads nothing, and a
    mixed batch reads only the keys some get/delete/cas looks at (with the right results)."""
    machine = registry.create("kv", 1)
    machine.apply_batch(
        [(json.dumps({"op": "put", "key": "old", "value": "1"}), ApplyContext(1, 1, "a"))]
    )

    def batch(*ops: dict[str, str]) -> list[tuple[str, ApplyContext]]:
        return [(json.dumps(op), ApplyContext(1, 2 + i, f"b{i}")) for i, op in enumerate(ops)]

    with traced_statements() as statements:
        results = machine.apply_batch(
            batch(
                {"op": "put", "key": "old", "value": "2"}, {"op": "put", "key": "x", "value": "3"}
            )
        )
    assert results == [{"key": "old", "value": "2"}, {"key": "x", "value": "3"}]
    assert any("INSERT INTO kvstore_entry" in sql for sql in statements)  # the trace works
    assert not [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]

    with traced_statements() as statements:
        results = machine.apply_batch(
            batch(
                {"op": "put", "key": "y", "value": "4"},
                {"op": "get", "key": "old"},
                {"op": "cas", "key": "y", "expected": "4", "value": "5"},
            )
        )
    assert results == [
        {"key": "y", "value": "4"},
        {"key": "old", "value": "2", "found": True},
        {"key": "y", "succeeded": True, "value": "5"},
    ]
    selects = [sql for sql in statements if "SELECT" in sql.upper()]
    assert len(selects) == 1 and "'old'" in selects[0] and "'y'" in selects[0]


class RaisingDict(dict):
    def items(self):  # type: ignore[override]
        raise KeyError("user code")


@pytest.mark.parametrize(
    ("result", "answered"),
    [
        ((1, 2), [1, 2]),  # the first caller gets what a retry gets back
        (Decimal("1.50"), "1.50"),
        ({1: "a"}, {"1": "a"}),
        (2**70, 2**70),
        (float("nan"), None),
    ],
)
def test_a_result_is_answered_as_it_is_stored(result: object, answered: object) -> None:
    value, text = portable_result(result)
    assert value == answered and decode_result(text) == answered


@pytest.mark.parametrize(
    "result",
    [{1, 2}, b"x", object(), "a\ud800", {1: float("nan")}, RaisingDict({1: "a"})],
    ids=["set", "bytes", "object", "lone-surrogate", "nan-on-the-json-path", "raising"],
)
def test_a_result_no_client_could_read_becomes_an_error(result: object) -> None:
    """Stored as its str() it differed per node; a lone surrogate or a bare NaN in the stored
    JSON made AsyncPaxosClient (orjson) fail the whole connection on every retry."""
    value, text = portable_result(result)
    assert "is not JSON" in value["error"] and orjson.loads(text) == value
