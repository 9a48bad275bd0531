"""Server settings: one frozen dataclass, filled by ``vqnat serve`` (or a test), passed to ``create_app``.

Multi-worker uvicorn imports the app in each worker process, so the settings also travel as JSON in the
``VQNAT_SERVER_SETTINGS`` environment variable (:meth:`Settings.to_env` / :meth:`Settings.from_env`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "VQNAT_SERVER_SETTINGS"
API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Settings:
    """What to serve and the limits it is served under. Defaults suit a small CPU box."""

    nat: Path | None = None  # latent-transformer checkpoint (served as model "nat")
    teacher: Path | None = None  # autoregressive checkpoint (served as model "teacher")
    data_dir: Path | None = None  # dictionaries folder; None: the folder recorded in the checkpoint
    device: str = "cpu"
    teacher_beam: int = 1  # default beam of the teacher; a request may ask for 1..max_beam
    max_beam: int = 8
    host: str = "127.0.0.1"  # loopback only unless asked: the service has no TLS
    port: int = 8000
    # dynamic batching: a model batch closes at max_batch_sentences, max_batch_tokens (estimated source subword
    # tokens), or max_wait_ms after its first sentence arrived, whichever comes first. 1 sentence = no batching.
    max_batch_sentences: int = 64
    max_batch_tokens: int = 4096
    max_wait_ms: float = 5.0
    # request limits (each a 4xx JSON error when exceeded)
    max_sentences_per_request: int = 64
    max_chars_per_sentence: int = 1000
    max_body_bytes: int = 256 * 1024
    request_timeout_s: float = 60.0  # a request still waiting for its batch after this gets a 503
    api_key: str | None = None  # when set, /v1/* need the X-API-Key header
    torch_threads: int | None = None  # torch intra-op threads per process; None: torch's default
    # Python's GIL switch interval while serving (default 5 ms). A small model's forward pass is mostly Python
    # holding the GIL; a shorter interval lets the event loop take in requests (and so fill batches) meanwhile.
    gil_switch_interval_ms: float | None = 1.0

    def __post_init__(self) -> None:
        if self.nat is None and self.teacher is None:
            raise ValueError("nothing to serve: give a NAT checkpoint (--nat) and/or a teacher (--teacher)")
        for name in ("max_batch_sentences", "max_batch_tokens", "max_sentences_per_request",
                     "max_chars_per_sentence", "max_body_bytes", "teacher_beam", "max_beam"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.teacher_beam > self.max_beam:
            raise ValueError(f"teacher_beam={self.teacher_beam} exceeds max_beam={self.max_beam}")
        if self.gil_switch_interval_ms is not None and self.gil_switch_interval_ms <= 0:
            raise ValueError(f"gil_switch_interval_ms must be > 0, got {self.gil_switch_interval_ms}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")

    @property
    def checkpoints(self) -> dict[str, Path]:
        """Model name -> checkpoint, for the models configured."""
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
