"""What the README and docs/ say must hold: the example files they quote are the files in
examples/, the seed-style example app works as installed the README's way, every relative link
and anchor resolves, and ``manage.py`` without ``PAXOS_CONFIG``/``PAXOS_NODE_ID`` fails the way the
README's warning next to ``createsuperuser`` says."""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

import pytest
from django.test import override_settings

from consensus.registry import registry
from consensus.statemachine import ApplyContext
from tests.fixtures.procs import PROJECT, assert_one_line, manage

README = PROJECT / "README.md"
DOCUMENTS = [README, *sorted((PROJECT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _quoted_files() -> list[tuple[str, str]]:
    """(path, code) of each README ``python`` block whose first line is ``# path/of/a/file.py``."""
    found = []
    for language, code in FENCE.findall(README.read_text(encoding="utf-8")):
        first, _, rest = code.partition("\n")
        if language == "python" and re.fullmatch(r"# [\w/.-]+\.py", first):
            found.append((first[2:], rest))
    return found


def test_the_readme_quotes_example_files_as_they_are() -> None:
    """A quoted file is the file, but for a docstring and imports the README leaves out above."""
    quoted = _quoted_files()
    assert {path for path, _ in quoted} >= {
        "examples/counter/statemachines.py",
        "examples/seedkv/statemachines.py",
    }
    for path, code in quoted:
        text = (PROJECT / path).read_text(encoding="utf-8")
        assert text.endswith(code), f"README's {path} differs from the file"


def test_the_seed_style_example_app_registers_and_answers(settings) -> None:
    """examples/seedkv, installed the README's way (``PAXOS_EXTRA_APPS``, i.e. an installed
    app), registers "seedkv"; the seed's messages work, and a bad one raises (which a node turns
    into an error result)."""
    try:
        with override_settings(INSTALLED_APPS=[*settings.INSTALLED_APPS, "examples.seedkv"]):
            machine = registry.create("seedkv", 4)
            assert machine.durable is False

            def apply(command: str, instance: int) -> object:
                return machine.apply(command, ApplyContext(4, instance, f"r{instance}"))

            assert apply('{"type": "put", "key": "name", "value": "Mike"}', 1) == "ok"
            assert apply('{"type": "get", "key": "name"}', 2) == "Mike"
            assert apply('{"type": "delete", "key": "name"}', 3) == "ok"
            assert apply('{"type": "get", "key": "name"}', 4) is None
            with pytest.raises(json.JSONDecodeError):
                apply("nonsense", 5)
    finally:
        if registry.is_registered("seedkv"):
            registry.unregister("seedkv")
        sys.modules.pop("examples.seedkv.statemachines", None)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug, number = _slug(heading), 1
        while slug in anchors:  # GitHub numbers repeated headings: slug, slug-1, ...
            slug = f"{_slug(heading)}-{number}"
            number += 1
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_and_anchors_resolve(document: Path) -> None:
    text = FENCE.sub("", document.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no such anchor in {linked.name}")
    assert not broken, broken


def test_a_database_command_without_the_node_variables_says_what_to_set(tmp_path: Path) -> None:
    """README "Admin users": without PAXOS_CONFIG and PAXOS_NODE_ID, ``createsuperuser`` uses a
    database nobody migrated; it fails in one line that names the file and both variables (not
    a traceback ending in ``no such table``), and ``--traceback`` still shows the traceback.
    (DATABASE_URL points at a file of this test's own instead of the project's db.sqlite3.)"""
    database = tmp_path / "db.sqlite3"
    url = f"sqlite:///{database}"
    command = ("createsuperuser", "--noinput", "--username", "someone", "--email", "a@b.c")
    env = {"DATABASE_URL": url, "DJANGO_SUPERUSER_PASSWORD": "x-long-password-1"}
    result = manage(*command, **env)
    assert_one_line(result, f"error: no such table: auth_user in {database} (DATABASE_URL, ")
    assert "PAXOS_CONFIG and PAXOS_NODE_ID are not set" in result.stderr
    assert "PAXOS_NODE_ID=1 python manage.py createsuperuser" in result.stderr
    traced = manage(*command, "--traceback", **env)
    assert traced.returncode == 1
    assert "Traceback" in traced.stderr and "no such table: auth_user" in traced.stderr
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert "`error: no such table: auth_user in .../db.sqlite3" in readme
