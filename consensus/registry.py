"""Where state machines are found, the way Django's admin finds ``admin.py`` modules.

``@register("kv")`` on a ``StateMachine`` subclass (or a seed-style class with a ``callback``
method) in an installed app's ``statemachines.py`` makes it available to groups whose config names
it: ``"groups": [{"id": 1, "stateMachine": "kv"}]``. ``ConsensusConfig.ready()`` calls
``autodiscover()``; ``SimpleConsensusConfig`` does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.utils.module_loading import autodiscover_modules

from .statemachine import CallbackStateMachine, LogOnlyStateMachine, StateMachine

T = TypeVar("T", bound=type)


class AlreadyRegistered(Exception):
    """A second ``register`` under a name in use (``admin.sites.AlreadyRegistered``)."""


class NotRegistered(KeyError):
    """No state machine of that name (``admin.sites.NotRegistered``)."""

    def __str__(self) -> str:  # KeyError's str() would add quotes around the message
        return str(self.args[0]) if self.args else ""


class StateMachineRegistry:
    """Name -> state machine class, like ``AdminSite._registry`` maps models to admins.

    ``_registry`` is the attribute ``autodiscover_modules`` snapshots and restores when a
    ``statemachines.py`` fails to import, so a half-imported module leaves nothing behind.
    """

    def __init__(self) -> None:
        self._registry: dict[str, type[StateMachine]] = {}

    def register(self, name: str, machine: type[Any]) -> type[StateMachine]:
        """Register ``machine`` under ``name``; return the class the registry will instantiate
        (``machine`` itself, or an adapter for a seed-style ``callback(msg)`` class).

        Raises ``AlreadyRegistered`` if the name is taken (unregister first to replace it),
        ``TypeError``/``ValueError`` for something that cannot be a state machine.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError("a state machine needs a non-empty name")
        if not isinstance(machine, type):
            raise TypeError(f"register a class, not {machine!r}")
        if not issubclass(machine, StateMachine):
            if not callable(getattr(machine, "callback", None)):
                raise TypeError(
                    f"{machine.__name__} needs to subclass StateMachine or define callback(msg)"
                )
            machine = _adapt_callback_class(machine)
        if name in self._registry:
            raise AlreadyRegistered(
                f"state machine {name!r} is already registered "
                f"({self._registry[name].__qualname__})"
            )
        self._registry[name] = machine
        return machine

    def unregister(self, name: str) -> None:
        if name not in self._registry:
            raise NotRegistered(f"state machine {name!r} is not registered")
        del self._registry[name]

    def is_registered(self, name: str) -> bool:
        return name in self._registry

    def get(self, name: str) -> type[StateMachine]:
        try:
            return self._registry[name]
        except KeyError:
            raise NotRegistered(
                f"no state machine named {name!r} (registered: {', '.join(self.names())})"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._registry)

    def name_of(self, machine: object) -> str:
        """The name ``machine``'s class is registered under (for messages that name it as the
        config does), else its class name."""
        cls = type(machine)
        return next((name for name, known in self._registry.items() if known is cls), cls.__name__)

    def create(self, name: str, group_id: int) -> StateMachine:
        """A fresh instance for one group (each group has its own state)."""
        return self.get(name)(group_id)


registry = StateMachineRegistry()
registry.register("log", LogOnlyStateMachine)


def register(name: str, *, site: StateMachineRegistry | None = None) -> Callable[[T], T]:
    """Class decorator: ``@register("kv")``. Returns the class unchanged (like
    ``admin.register``), so a seed-style callback class stays usable on its own."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError('@register needs the state machine\'s name: @register("kv")')

    def decorator(machine: T) -> T:
        (site or registry).register(name, machine)
        return machine

    return decorator


def machine_apps() -> set[str]:
    """Labels of the installed apps (this one aside) whose modules define a registered state
    machine: the apps that hold replicated state."""
    from django.apps import apps

    labels = set()
    for name in registry.names():
        config = apps.get_containing_app_config(registry.get(name).__module__)
        if config is not None and config.label != "consensus":
            labels.add(config.label)
    return labels


def autodiscover() -> None:
    """Import every installed app's ``statemachines.py``. An app without one is skipped; an error
    inside one is raised (after the registry is restored to what it was before that import)."""
    autodiscover_modules("statemachines", register_to=registry)


def _adapt_callback_class(user_class: type[Any]) -> type[StateMachine]:
    """Wrap a seed-style ``callback(msg)`` class (no base class needed) as a state machine."""

    class Adapted(CallbackStateMachine):
        def __init__(self, group_id: int) -> None:
            super().__init__(group_id)
            self.target = user_class()

        def callback(self, msg: str) -> Any:
            return self.target.callback(msg)

    Adapted.__name__ = Adapted.__qualname__ = f"{user_class.__name__}Adapter"
    return Adapted
