"""Server settings: one frozen dataclass, filled by ``vqnat serve`` (or a test), passed to ``create_app``.

Every default is declared here once; ``vqnat serve`` reads its option defaults from this class. Multi-worker
uvicorn imports the app in each worker process, so the settings also travel as JSON in the
``VQNAT_SERVER_SETTINGS`` environment variable (:meth:`Settings.to_env` / :meth:`Settings.from_env`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "VQNAT_SERVER_SETTINGS"
API_KEY_HEADER = "X-API-Key"
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@dataclass(frozen=True)
class Settings:
    """What to serve and the limits it is served under. Defaults suit a small CPU box."""

    nat: Path | None = None  # latent-transformer bundle or checkpoint (served as model "nat")
    teacher: Path | None = None  # autoregressive bundle or checkpoint (served as model "teacher")
    data_dir: Path | None = None  # dictionaries folder; None: the folder recorded in the checkpoint
    trust_checkpoint: bool = False  # unpickle .pt checkpoints from outside vqnat's own training folders
    device: str = "cpu"
    teacher_beam: int = 1  # default beam of the teacher; a request may ask for 1..max_beam
    max_beam: int = 8
    host: str = "127.0.0.1"  # loopback only unless asked: the service has no TLS
    port: int = 8000
    allow_remote: bool = False  # binding a non-loopback address needs this (a deliberate choice)
    # dynamic batching: a model batch closes at max_batch_sentences, max_batch_tokens (source subword tokens,
    # EOS included), or max_wait_ms after its oldest sentence arrived, whichever comes first. 1 = no batching.
    max_batch_sentences: int = 64
    max_batch_tokens: int = 4096
    max_wait_ms: float = 5.0
    # request limits (each a 4xx JSON error when exceeded)
    max_sentences_per_request: int = 64
    max_chars_per_sentence: int = 1000
    max_body_bytes: int = 256 * 1024
    # cost admission, per model. A sentence of n source tokens costs n * beam * (max_len_a * n + max_len_b):
    # source positions attended x hypotheses x output steps. A request costing more than max_request_cost is
    # refused (413); one that would take a model's queued and running work over max_queued_cost gets a 429.
    # A model batch also closes before it would exceed max_request_cost.
    max_request_cost: int = 2_000_000
    max_queued_cost: int = 8_000_000
    request_timeout_s: float = 60.0  # a request still waiting for its translation after this gets a 503
    # connections (uvicorn's own limits where it has them)
    header_timeout_s: float = 10.0  # a connection must deliver a request's headers within this (else closed)
    body_timeout_s: float = 30.0  # and its body within this once the headers are in (else 408)
    keep_alive_timeout_s: int = 5  # idle time allowed between requests on a kept-alive connection
    max_connections: int = 1024  # open connections and requests in flight; beyond it uvicorn answers 503
    max_header_bytes: int = 16 * 1024  # request line plus headers (else 400)
    shutdown_timeout_s: float = 8.0  # on SIGTERM: time for requests in flight before they are cut off
    api_key: str | None = None  # when set, /v1/* need the X-API-Key header (ASCII printable only)
    open_docs_and_metrics: bool = False  # with an API key: leave /metrics, /docs, /openapi.json open
    torch_threads: int | None = None  # torch intra-op threads per process; None: torch's default
    # Python's GIL switch interval while serving (default 5 ms). A small model's forward pass is mostly Python
    # holding the GIL; a shorter interval lets the event loop take in requests (and so fill batches) meanwhile.
    gil_switch_interval_ms: float | None = 1.0
    log_level: str = "info"
    workers: int = 1  # uvicorn worker processes, each with its own copy of the models

    def __post_init__(self) -> None:
        if self.nat is None and self.teacher is None:
            raise ValueError("nothing to serve: give a NAT model (--nat) and/or a teacher (--teacher)")
        for name in ("max_batch_sentences", "max_batch_tokens", "max_sentences_per_request",
                     "max_chars_per_sentence", "max_body_bytes", "teacher_beam", "max_beam", "max_request_cost",
                     "max_queued_cost", "keep_alive_timeout_s", "max_connections", "max_header_bytes", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("request_timeout_s", "header_timeout_s", "body_timeout_s", "shutdown_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.teacher_beam > self.max_beam:
            raise ValueError(f"teacher_beam={self.teacher_beam} exceeds max_beam={self.max_beam}")
        if self.max_queued_cost < self.max_request_cost:
            raise ValueError(f"max_queued_cost={self.max_queued_cost} is below max_request_cost="
                             f"{self.max_request_cost}: no request at the limit could ever be admitted")
        if self.gil_switch_interval_ms is not None and self.gil_switch_interval_ms <= 0:
            raise ValueError(f"gil_switch_interval_ms must be > 0, got {self.gil_switch_interval_ms}")
        if self.api_key is not None:
            check_api_key(self.api_key)
        if not self.allow_remote and not is_loopback(self.host):
            raise ValueError(f"--host {self.host} would serve other machines, over plain HTTP: pass --allow-remote "
                             "to do so deliberately (behind a TLS proxy, with --api-key)")

    @property
    def checkpoints(self) -> dict[str, Path]:
        """Model name -> bundle or checkpoint, for the models configured."""
        named = {"nat": self.nat, "teacher": self.teacher}
        return {name: Path(path) for name, path in named.items() if path is not None}

    def to_env(self) -> str:
        fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        return json.dumps(fields)

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            raise ValueError(f"{ENV_VAR} is not set: start the server with `vqnat serve`")
        fields = json.loads(raw)
        for key in ("nat", "teacher", "data_dir"):
            if fields.get(key) is not None:
                fields[key] = Path(fields[key])
        return cls(**fields)


def check_api_key(key: str) -> None:
    """Refuse (``ValueError``, one line) a key HTTP clients cannot send as-is: empty, non-ASCII or with spaces
    or control characters (header values are bytes; clients differ on how they encode other characters)."""
    if not key or not all("!" <= char <= "~" for char in key):
        raise ValueError("the API key must be non-empty printable ASCII without spaces (characters ! to ~)")


def default(name: str) -> object:
    """The default of setting ``name``: ``vqnat serve`` options take their defaults from here."""
    return Settings.__dataclass_fields__[name].default
