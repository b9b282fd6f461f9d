"""Django settings of the Paxos service.

One process runs one node. ``runpaxos`` sets ``PAXOS_CONFIG`` (the cluster json) and
``PAXOS_NODE_ID`` in the environment before Django starts; everything node-specific (database
file, secret key, allowed hosts) is derived from them here. Without them (``manage.py check``,
``migrate`` on a dev box, the test-suite) the settings fall back to a local development setup.

Environment:
- ``PAXOS_CONFIG``, ``PAXOS_NODE_ID``: the node this process is.
- ``DATABASE_URL``: use this database instead of the per-node SQLite file. A ``{node_id}`` in it
  is replaced by the node id, so one URL can serve a whole local cluster (one database per node;
  ``consensus.storage.databases.ensure_postgres_database`` creates it). A ``sqlite:///PATH`` URL
  gets the same SQLite settings as the default file.
- ``PAXOS_SECRET_KEY``: Django's SECRET_KEY; by default derived from the cluster ``secret``.
- ``PAXOS_DEBUG=1``: DEBUG on. ``PAXOS_ALLOWED_HOSTS``: extra hosts, comma separated.
  ``PAXOS_CSRF_TRUSTED_ORIGINS``: origins of a TLS proxy in front (``https://paxos1.example.com``),
  comma separated.
- ``PAXOS_LOG_LEVEL``: log level of the ``consensus`` loggers (default INFO).
- ``PAXOS_HAND_OVER_TIMEOUT``: seconds a stopping node waits for the groups it leads to get a new
  leader (default 0.5; 0: no hand-over).
- ``PAXOS_DIGEST_WINDOW``: instances per window of the result digests the nodes compare
  (default 1000; 0: none). ``PAXOS_STATE_CHECK_INTERVAL``: seconds between state checks
  (default 300; 0: none).
- ``PAXOS_ADMIN_LOGIN_FAILURES``, ``PAXOS_ADMIN_LOCKOUT_MINUTES``: failed logins for one username
  from one address that lock it out of the admin login, and for how long (defaults 5 and 15).
- ``PAXOS_TRUSTED_PROXIES``: addresses or networks of reverse proxies in front, comma separated;
  a request from one of them counts as its ``X-Forwarded-For`` client's (consensus.proxies).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from consensus.config import (
    DEFAULT_STATE_MACHINE,
    ClusterConfig,
    ConfigError,
    load_config,
    make_data_folder,
)
from consensus.proxies import parse_trusted_proxies
from consensus.storage.databases import (
    NODE_ID_PLACEHOLDER,
    POSTGRES_ENGINES,
    expand_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent

_Number = TypeVar("_Number", int, float)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _env_number(name: str, default: _Number) -> _Number:
    """``name`` from the environment as the type of ``default`` (unset or empty: ``default``);
    not a number is one ``error:`` line (manage.py), not a ValueError traceback."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    kind = type(default)
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ImproperlyConfigured(
            f"{name}={text!r} is not {what}: give {what} (e.g. {default}) or unset it"
        ) from None


def _env_count(name: str, default: int, unit: str, most: int = 10**6) -> int:
    """``_env_number`` for a count of ``unit`` from 1 to ``most`` (beyond it, a number of
    minutes no longer makes a ``timedelta``)."""
    value = _env_number(name, default)
    if not 1 <= value <= most:
        raise ImproperlyConfigured(
            f"{name}={value} is not a number of {unit}: give an integer from 1 to {most} (the "
            f"default is {default}) or unset it"
        )
    return value


READ_MODES = ("index", "log")


def _read_mode() -> str:
    mode = os.environ.get("PAXOS_READ_MODE", "").strip().lower() or "index"
    if mode not in READ_MODES:
        raise ImproperlyConfigured(
            f"PAXOS_READ_MODE={os.environ['PAXOS_READ_MODE']!r} is not a read mode: "
            "use index (the default) or log"
        )
    return mode


def _load_node_config() -> ClusterConfig | None:
    """The cluster config of this node, when ``runpaxos`` (or a test) named one."""
    path = os.environ.get("PAXOS_CONFIG")
    node_id_text = os.environ.get("PAXOS_NODE_ID", "").strip()
    if not path:
        # e.g. ``createsuperuser`` would silently use the development db.sqlite3. Not for
        # runpaxos, which sets both itself (a service unit may well export PAXOS_NODE_ID).
        if node_id_text and sys.argv[1:2] != ["runpaxos"]:
            raise ImproperlyConfigured(
                f"PAXOS_NODE_ID={node_id_text} is set without PAXOS_CONFIG: set both together "
                f"(PAXOS_CONFIG=cluster.json PAXOS_NODE_ID={node_id_text}) to use that node's "
                "database, or neither"
            )
        return None
    try:
        node_id = int(node_id_text) if node_id_text else None
    except ValueError:
        raise ImproperlyConfigured(
            f"PAXOS_NODE_ID must be an integer, not {node_id_text!r}"
        ) from None
    try:
        return load_config(
            path,
            node_id,
            default_state_machine=PAXOS_DEFAULT_STATE_MACHINE,
            # runpaxos sets PAXOS_NODE_ID from its --node; anything else, the user did
            node_source="--node" if sys.argv[1:2] == ["runpaxos"] else "PAXOS_NODE_ID",
        )
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None


# Paxos defaults (the cluster file overrides the per-cluster ones at runtime).
PAXOS_DEFAULT_STATE_MACHINE = DEFAULT_STATE_MACHINE
PAXOS_TICK_MS = 10
"""Length of one core tick; timeouts in the config (ms) are converted to ticks with it."""
PAXOS_RECENT_CHOSEN = 1024
"""Chosen values loaded into memory at start to serve catch-up without reading the database."""
PAXOS_MAX_COMMIT_BATCH = 4096
"""Readies written in one group-commit transaction at most (bounds the latency of one commit)."""
PAXOS_READY_MAX_LAG = 100
"""``/readyz`` fails while a group's applied index is more than this many instances behind the
highest chosen index the node knows of (consensus.health)."""
PAXOS_DIGEST_WINDOW = _env_number("PAXOS_DIGEST_WINDOW", 1000)
if PAXOS_DIGEST_WINDOW < 0:
    raise ImproperlyConfigured(
        f"PAXOS_DIGEST_WINDOW={PAXOS_DIGEST_WINDOW} is negative: give a number of instances (the "
        "default is 1000), or 0 to compare nothing"
    )
"""The nodes compare digests of their state machines' results every this many instances of a
group's log (consensus/core/result_digest.py); the same on every node. 0: no comparison."""
PAXOS_STATE_CHECK_INTERVAL = _env_number("PAXOS_STATE_CHECK_INTERVAL", 300.0)
if not 0 <= PAXOS_STATE_CHECK_INTERVAL < float("inf"):  # NaN fails too
    raise ImproperlyConfigured(
        f"PAXOS_STATE_CHECK_INTERVAL={PAXOS_STATE_CHECK_INTERVAL} is not a number of seconds: "
        "give one (the default is 300), or 0 for no periodic state checks"
    )
"""Seconds between a leader's state checks: every node takes its state machine's
``state_digest`` at the same place of the log and the result digests compare them. 0: none."""

# REST API limits (consensus.api.fastpath): beyond them a request gets 413.
PAXOS_MAX_BODY_BYTES = _env_number("PAXOS_MAX_BODY_BYTES", 1024 * 1024)
PAXOS_MAX_KEY_BYTES = _env_number("PAXOS_MAX_KEY_BYTES", 1024)
PAXOS_MAX_VALUE_BYTES = _env_number("PAXOS_MAX_VALUE_BYTES", 256 * 1024)
PAXOS_API_TOKENS: tuple[str, ...] = tuple(
    token for token in os.environ.get("PAXOS_API_TOKENS", "").split(",") if token.strip()
)
"""Extra API tokens on top of the config's apiTokens (a dev server without a cluster config)."""
# Exactly-once results (consensus.models.RequestResult), pruned through the log (pruning.py).
PAXOS_READ_MODE = _read_mode()
"""Linearizable reads: "index" (a read index confirmed by a majority heartbeat round, no disk
write; the default) or "log" (a marker command through the log)."""
PAXOS_PRUNE_INTERVAL = _env_number("PAXOS_PRUNE_INTERVAL", 60.0)
"""Seconds between a leader's proposals to prune old exactly-once results (through the log)."""
PAXOS_REQUEST_RESULT_TTL = _env_number("PAXOS_REQUEST_RESULT_TTL", 24 * 3600)
"""Seconds a request id's first result is kept at least (retries within it are exactly-once)."""
PAXOS_REQUEST_RESULT_MAX = _env_number("PAXOS_REQUEST_RESULT_MAX", 1_000_000)
"""At most this many results kept per group beyond the TTL (the newest win)."""

PAXOS_ADMIN_LOGIN_FAILURES = _env_count("PAXOS_ADMIN_LOGIN_FAILURES", 5, "failed logins")
"""Failed admin logins for one username from one address that lock it out (django-axes, below)."""
PAXOS_ADMIN_LOCKOUT_MINUTES = _env_count("PAXOS_ADMIN_LOCKOUT_MINUTES", 15, "minutes")
"""How long such a lockout lasts, from the failed login that started it."""
PAXOS_TRUSTED_PROXIES = parse_trusted_proxies(os.environ.get("PAXOS_TRUSTED_PROXIES", ""))
"""Reverse proxies whose ``X-Forwarded-For`` names the client (the lockout counts per client
address, not per proxy). None by default: the header is anyone's text."""

PAXOS_UNSAFE_SKIP_REBUILD = _env_flag("PAXOS_UNSAFE_SKIP_REBUILD")
"""A negative control for tests only: a node whose database is new votes at once instead of
rebuilding first (consensus/core/rebuild.py), which can lose acknowledged writes
(tests/e2e/test_rebuild.py shows how). Never set it on a real cluster."""

PAXOS_CLUSTER: ClusterConfig | None = _load_node_config()
PAXOS_NODE_ID: int | None = PAXOS_CLUSTER.my_id if PAXOS_CLUSTER is not None else None

DEBUG = _env_flag("PAXOS_DEBUG")

# Never a hard-coded key in production: from the environment, else derived from the cluster secret
# (domain-separated, so the Django key does not reveal the peer-link secret), else a dev-only key.
if os.environ.get("PAXOS_SECRET_KEY"):
    SECRET_KEY = os.environ["PAXOS_SECRET_KEY"]
elif PAXOS_CLUSTER is not None:
    SECRET_KEY = hmac.new(
        PAXOS_CLUSTER.secret.encode(), b"paxos django SECRET_KEY", hashlib.sha256
    ).hexdigest()
else:
    SECRET_KEY = "django-insecure-development-only-no-cluster-config-loaded"

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
if PAXOS_CLUSTER is not None:
    for _node in PAXOS_CLUSTER.nodes:
        _host = f"[{_node.host}]" if ":" in _node.host else _node.host
        if _host not in ALLOWED_HOSTS:
            ALLOWED_HOSTS.append(_host)
ALLOWED_HOSTS += [
    host.strip() for host in os.environ.get("PAXOS_ALLOWED_HOSTS", "").split(",") if host.strip()
]
# Behind a TLS proxy the browser's Origin (https://paxos1.example.com) is not the node's own:
# name it here, or the admin's logins and the dashboard's submits fail Django's CSRF origin check
# and its websocket is refused (consensus.dashboard.origin).
CSRF_TRUSTED_ORIGINS = [
    origin.strip().rstrip("/")
    for origin in os.environ.get("PAXOS_CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

INSTALLED_APPS = [
    # First, for its management commands: its ``runserver`` refuses to start a site without a
    # node (it points to runpaxos) instead of daphne's or Django's. Nothing of it imports Twisted.
    "consensus",
    "daphne",  # next: importing its app installs Twisted's asyncio reactor early
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # the admin login's lockout, see AXES_* below
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "kvstore",
]
# More apps with state machines (e.g. PAXOS_EXTRA_APPS=examples.counter), without editing this file.
INSTALLED_APPS += [
    app.strip() for app in os.environ.get("PAXOS_EXTRA_APPS", "").split(",") if app.strip()
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes requires: it turns a login its backend refused into the lockout answer. It
    # is async-capable, so it adds no thread hop; the lean API paths (consensus/api/lean.py) skip
    # the middleware anyway and never log anyone in.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "paxos_site.urls"
ASGI_APPLICATION = "paxos_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Peer traffic never goes through a channel layer (at-most-once, see STYLE.md §4); the in-memory
# layer only serves in-process fan-out such as the live dashboard.
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Browsers keep cookies per host, not per port: with the default names, logging in to the admin of
# node 2 on 127.0.0.1 would replace (and so end) the session of node 1. Each node gets its own.
if PAXOS_CLUSTER is not None:
    SESSION_COOKIE_NAME = f"paxos{PAXOS_CLUSTER.me.port}_sessionid"
    CSRF_COOKIE_NAME = f"paxos{PAXOS_CLUSTER.me.port}_csrftoken"


def _sqlite_database(path: Path) -> dict[str, Any]:
    """WAL with synchronous=FULL: a commit is on disk when it returns, at ~7,000 commits/s on
    the 2-core machines this was measured on. IMMEDIATE transactions take the write lock at
    BEGIN, so concurrent writers wait on the busy timeout instead of failing with a lock upgrade
    error mid-transaction."""
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": path,
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        },
        # Persistent: API reads run on one sync_to_async thread; reopening the file and running
        # the PRAGMAs on every request cost about a millisecond per read.
        "CONN_MAX_AGE": None,
        # A file, not Django's shared-cache in-memory default: the writer thread of the storage
        # tests needs real WAL semantics. The pid keeps concurrent test runs apart.
        "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"paxos_test_{os.getpid()}.sqlite3")},
    }


SQLITE_ENGINE = "django.db.backends.sqlite3"
SUPPORTED_URLS = (
    "only postgres:// and sqlite:// URLs are supported (e.g. postgres://user@127.0.0.1:5432/"
    "paxos_node{node_id} or sqlite:////abs/path/node{node_id}.sqlite3)"
)


def _parse_database_url(url: str) -> dict[str, Any]:
    """``DATABASE_URL`` parsed, or one clear ImproperlyConfigured: a placeholder other than
    ``{node_id}`` (it would name a database literally), or an engine nodes do not support."""
    for placeholder in re.findall(r"\{[^{}]*\}", url):
        if placeholder != NODE_ID_PLACEHOLDER:
            raise ImproperlyConfigured(
                f"DATABASE_URL has the placeholder {placeholder}: {NODE_ID_PLACEHOLDER} is the "
                "only one (replaced by the node id); write a literal brace as %7B or %7D"
            )
    scheme = url.split("://", 1)[0] if "://" in url else ""
    unsupported = (
        f"DATABASE_URL: the scheme {scheme}:// is not supported"
        if scheme
        else "DATABASE_URL is not a database URL (no scheme://)"
    )
    try:
        database = dj_database_url.parse(expand_database_url(url, PAXOS_NODE_ID))
    except dj_database_url.UnknownSchemeError:
        raise ImproperlyConfigured(f"{unsupported}; {SUPPORTED_URLS}") from None
    except ValueError as error:  # e.g. a port that is not a number
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid URL ({error})") from None
    if database["ENGINE"] not in POSTGRES_ENGINES | {SQLITE_ENGINE}:
        raise ImproperlyConfigured(f"{unsupported}; {SUPPORTED_URLS}")
    return database


def _pin_synchronous_commit(database: dict[str, Any]) -> None:
    """A vote must be on disk before it leaves the node. SQLite's files get synchronous=FULL;
    PostgreSQL's commits wait for the disk only while the server's ``synchronous_commit`` is on,
    its default, which a server or a role may have turned off. Each connection turns it on
    (for every commit: ``DjangoStorage.relaxed_durability`` says why turns without votes wait
    too on PostgreSQL), unless the URL sets it itself:
    ``?options=-c synchronous_commit=remote_apply`` is stricter still."""
    options = database.setdefault("OPTIONS", {})
    given = str(options.get("options", ""))
    if "synchronous_commit" not in given:
        options["options"] = f"{given} -c synchronous_commit=on".strip()


def _database() -> dict[str, Any]:
    url = os.environ.get("DATABASE_URL")
    if url:
        database = _parse_database_url(url)
        if database["ENGINE"] == SQLITE_ENGINE:
            if database["NAME"] == ":memory:":
                if PAXOS_CLUSTER is not None:  # a node: every thread would get its own database
                    raise ImproperlyConfigured(
                        f"DATABASE_URL={url!r} is an in-memory SQLite database; a node needs a "
                        "file: sqlite:////absolute/path.sqlite3 or sqlite:///relative/path.sqlite3"
                    )
                return database
            # Checked here for a node: SQLite's own "unable to open database file" comes at the
            # first query, where runpaxos can only guess at the cause. Other commands (--help,
            # collectstatic) may run where the folder is not mounted yet.
            folder = Path(database["NAME"]).absolute().parent
            if PAXOS_CLUSTER is not None and not folder.is_dir():
                problem = (
                    f"{folder} is a file, not a folder: fix the path"
                    if folder.exists()
                    else f"the folder {folder} does not exist: create it or fix the path"
                )
                raise ImproperlyConfigured(f"DATABASE_URL names a SQLite file but {problem}")
            # The file of a sqlite:// URL gets what the default file gets (WAL, FULL, IMMEDIATE):
            # dj-database-url gives none of it. Options in the URL still apply on top.
            sqlite = _sqlite_database(Path(database["NAME"]))
            sqlite["OPTIONS"] |= database.get("OPTIONS", {})
            return sqlite
        database["CONN_MAX_AGE"] = None  # persistent: reconnecting per request costs throughput
        _pin_synchronous_commit(database)
        return database
    if PAXOS_CLUSTER is not None:
        try:
            make_data_folder(PAXOS_CLUSTER)
        except ConfigError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        return _sqlite_database(PAXOS_CLUSTER.sqlite_path)
    return _sqlite_database(BASE_DIR / "db.sqlite3")


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Admin login lockout (django-axes). The first backend refuses a locked-out login before the
# password is checked; ModelBackend does the checking (and is what sessions record).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed logins are counted in this process's memory, not in the database: the node's SQLite
# database has one writer thread (group commit), and a login from the HTTP side must not become
# a second writer. A node is one process, so a local-memory cache sees all of its logins; a
# restart forgets the counts (and so unlocks everyone). Entries expire after the cool-off; the
# bound is far above what a node hashes passwords for in that time, so that junk usernames
# cannot evict the counts that matter.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "axes": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "axes",
        "OPTIONS": {"MAX_ENTRIES": 10_000},
    },
}
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "axes"
# axes warns about a local-memory cache because it assumes several server processes; a node is one.
SILENCED_SYSTEM_CHECKS = ["axes.W001"]
# Username and address together: a guesser elsewhere cannot lock the operators out (unless all
# come through one proxy, whose address they then share), and operators behind one address (a
# proxy, the demo's 127.0.0.1) do not lock each other out. Not the address
# alone as well: axes has one limit for every parameter, so it would lock the address after 5
# failures whatever the usernames, which the combination then adds nothing to.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = PAXOS_ADMIN_LOGIN_FAILURES
AXES_COOLOFF_TIME = timedelta(minutes=PAXOS_ADMIN_LOCKOUT_MINUTES)
AXES_RESET_ON_SUCCESS = True
# Attempts while locked out neither count nor log nor extend the lockout: it ends when it says.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
_minutes = f"{PAXOS_ADMIN_LOCKOUT_MINUTES} minute{'s' if PAXOS_ADMIN_LOCKOUT_MINUTES != 1 else ''}"
AXES_COOLOFF_MESSAGE = (
    f"Too many failed logins for this username from your address: locked out for up to {_minutes}."
)
# Its admin pages would list the database handler's tables, which stay empty here.
AXES_ENABLE_ADMIN = False
# The lockout's log line names the username and the address (axes masks them by default): what
# an operator needs to tell who is locked out, or to block the address. Passwords stay masked.
AXES_SENSITIVE_PARAMETERS: list[str] = []


def _axes_client_str(
    username: str | None, ip_address: str | None, user_agent: str, path_info: Any, request: Any
) -> str:
    """Who a lockout line names, each value escaped: a username is the client's own text, and
    one with a newline would otherwise write a line of its choosing into the node's log. No
    user agent: it is the client's text too, and says nothing an operator acts on."""
    path = path_info[0] if isinstance(path_info, tuple | list) else path_info
    return f"username={username!r} address={ip_address!r} path={path!r}"


AXES_CLIENT_STR_CALLABLE = _axes_client_str
AXES_CLIENT_IP_CALLABLE = "consensus.proxies.client_address"


def _axes_lockouts_only(record: logging.LogRecord) -> bool:
    """axes logs every failed login at WARNING; the node's log gets one line per lockout."""
    return record.levelno > logging.WARNING or str(record.msg).startswith("AXES: Locking out")


def _not_a_lockout_answer(record: logging.LogRecord) -> bool:
    """Django logs every 4xx answer at WARNING: not each 429 of a lockout axes logged once."""
    return not getattr(getattr(record, "request", None), "axes_locked_out", False)


LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# DRF serves the non-hot API endpoints (the hot ones are lean async views with the same rules).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "consensus.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["consensus.api.permissions.IsApiClient"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "consensus.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Paxos replication service API",
    "DESCRIPTION": (
        "Commands to replicated groups, the commit log, cluster status and the replicated KV "
        "store. Authenticate with `Authorization: Bearer <token>` (a token from the cluster "
        'config\'s apiTokens) or a staff session. Errors are `{"error": "..."}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No badge from validator.swagger.io: it is sent the schema URL (consensus/api/docs.py).
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "SECURITY": [{"bearerAuth": []}],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "filters": {
        "axes_lockouts": {"()": "django.utils.log.CallbackFilter", "callback": _axes_lockouts_only},
        "no_lockout_answers": {
            "()": "django.utils.log.CallbackFilter",
            "callback": _not_a_lockout_answer,
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        # On the handler: a logger's filter misses records of its children (axes.handlers.cache).
        "axes": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["axes_lockouts"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "consensus": {
            "handlers": ["console"],
            "level": os.environ.get("PAXOS_LOG_LEVEL", "INFO").upper(),
            "propagate": False,
        },
        # A Host not in ALLOWED_HOSTS: Django logs an ERROR with a traceback per request (a log
        # flood from any scanner); consensus.api.views.bad_request logs one WARNING line instead.
        "django.security.DisallowedHost": {"level": "CRITICAL"},
        "axes": {"handlers": ["axes"], "level": "WARNING", "propagate": False},
        "django.request": {"filters": ["no_lockout_answers"]},
    },
}
