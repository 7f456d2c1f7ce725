"""The MCP servers an agent's model may call during a call, and the record of a call.

An agent lists servers (`Agent.mcp`); each has a `name` (the prefix of its
tools' names as the model sees them: `<server>__<tool>`), a `url` (Streamable
HTTP, or SSE for servers that only offer that), `headers` whose values name
environment variables (`env:ORDERS_TOKEN`: the secret stays in the
environment, never in MongoDB), the tools the agent may use (`allowed_tools`,
None for all), a per-call `timeout_s` and `max_result_chars`, the clip applied
to a result before it reaches the model or the call document.

Old agents stored free-form objects under `mcp`; those read back as
`UnusableMcpEntry` (kept as they were, never called), so an old agent still
loads. The API refuses them: a new save needs well-formed servers.

`host_problem` is the allow-list check (`MCP_ALLOWED_HOSTS`), applied when an
agent is saved and again before every connection. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
)

from callbot.common.storable import storable_problem

# The separator between a server's name and its tool's in the names the model sees.
TOOL_SEPARATOR = "__"
_SERVER_NAME = r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$"  # no "__": the separator stays unambiguous
_ENV_REFERENCE = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

McpTransport = Literal["streamable_http", "sse"]
ToolOutcome = Literal["ok", "tool_error", "timeout", "refused", "unavailable"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class McpServer(_Model):
    """One MCP server as an agent configures it."""

    name: str = Field(min_length=1, max_length=24, pattern=_SERVER_NAME)
    url: str = Field(min_length=1, max_length=2000)
    transport: McpTransport = "streamable_http"
    headers: dict[str, str] = Field(default_factory=dict)
    allowed_tools: tuple[str, ...] | None = None  # None: every tool the server lists
    timeout_s: float = Field(default=2.0, gt=0, le=12)
    max_result_chars: int = Field(default=2000, ge=64, le=20000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {url!r} must be an http:// or https:// URL with a host")
        if parts.username or parts.password:
            raise ValueError("url must not carry credentials: put them in headers as env:NAME")
        return url

    @field_validator("headers")
    @classmethod
    def _values_name_the_environment(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not a valid HTTP header name")
            if not _ENV_REFERENCE.match(value):
                raise ValueError(
                    f"header {name!r} must name an environment variable as 'env:NAME' "
                    "(the secret stays in the environment of dialog and gateway, never in "
                    "MongoDB)"
                )
        return headers

    @property
    def host(self) -> str:
        return (urlsplit(self.url).hostname or "").lower()

    def header_variables(self) -> dict[str, str]:
        """Header name -> the environment variable that holds its value."""
        return {
            name: match.group(1)
            for name, value in self.headers.items()
            if (match := _ENV_REFERENCE.match(value))
        }

    def allows(self, tool: str) -> bool:
        return self.allowed_tools is None or tool in self.allowed_tools


class UnusableMcpEntry(BaseModel):
    """An `mcp` entry stored before servers were typed (or otherwise malformed):
    kept as it was, serialized back unchanged, and never called."""

    model_config = ConfigDict(frozen=True)

    raw: dict[str, Any]
    problem: str

    @model_serializer
    def _as_stored(self) -> dict[str, Any]:
        return self.raw


def _storable_entry(value: object) -> object:
    """Checked first, so an entry MongoDB could not store is refused for that reason."""
    if isinstance(value, dict):
        problem = storable_problem(value)
        if problem:
            raise ValueError(problem)
    return value


def _read_entry(value: object) -> object:
    """A well-formed server, or the entry kept as `UnusableMcpEntry`."""
    if isinstance(value, McpServer | UnusableMcpEntry):
        return value
    if not isinstance(value, dict):
        raise ValueError("an mcp entry must be a JSON object")
    _storable_entry(value)
    try:
        return McpServer.model_validate(value)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'entry'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        return UnusableMcpEntry(raw=value, problem=reasons)


def _names_are_unique(entries: tuple[McpServer | UnusableMcpEntry, ...]) -> tuple[Any, ...]:
    names = [entry.name for entry in entries if isinstance(entry, McpServer)]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"duplicate mcp server names {duplicates}: each needs a name of its own")
    return entries


McpEntry = Annotated[McpServer | UnusableMcpEntry, BeforeValidator(_read_entry)]
# `Agent.mcp`: read tolerantly (old free-form entries load as `UnusableMcpEntry`).
McpServers = Annotated[tuple[McpEntry, ...], AfterValidator(_names_are_unique)]
# What the API accepts: well-formed servers only.
McpServerList = Annotated[
    tuple[Annotated[McpServer, BeforeValidator(_storable_entry)], ...],
    AfterValidator(_names_are_unique),
]


def usable_servers(entries: Iterable[McpServer | UnusableMcpEntry]) -> tuple[McpServer, ...]:
    return tuple(entry for entry in entries if isinstance(entry, McpServer))


def parse_allowed_hosts(raw: str) -> frozenset[str]:
    """`MCP_ALLOWED_HOSTS`: comma-separated `host`, `host:port` or `*.domain` entries."""
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def host_problem(url: str, allowed: frozenset[str]) -> str | None:
    """Why callbot may not connect to `url`; None when its host is on the allow-list.

    An entry matches the host (any port), `host:port` (that port only), or
    `*.domain` (any host under domain). The list is of names: a name that
    resolves somewhere unexpected is the allow-list owner's to avoid."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"url {url!r} has an invalid port"
    for entry in allowed:
        if entry == host or entry == f"{host}:{port}":
            return None
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return None
    if not allowed:
        return f"host {host!r} is not allowed: MCP_ALLOWED_HOSTS is empty, so no MCP host is"
    return f"host {host!r} is not on MCP_ALLOWED_HOSTS ({', '.join(sorted(allowed))})"


def tool_name(server: str, tool: str) -> str:
    """The name the model sees for `tool` of `server`."""
    return f"{server}{TOOL_SEPARATOR}{tool}"


def split_tool_name(name: str) -> tuple[str, str] | None:
    server, separator, tool = name.partition(TOOL_SEPARATOR)
    return (server, tool) if separator and server and tool else None


def clip(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars`, saying so when it was cut."""
    if len(text) <= max_chars:
        return text
    marker = f"… [clipped: {len(text)} characters]"
    return text[: max(max_chars - len(marker), 0)] + marker


class ToolCallRecord(BaseModel):
    """One tool call the model made in a turn: stored on the assistant turn it led to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    outcome: ToolOutcome
    result: str | None = None  # clipped to the server's max_result_chars
    error: str | None = None
    duration_ms: int = Field(default=0, ge=0)


def storable_arguments(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as they can be stored: unchanged, or replaced by why not."""
    problem = storable_problem(dict(arguments))
    return dict(arguments) if problem is None else {"unstorable": problem}
