"""``vqnat serve``: the FastAPI translation service under uvicorn (see server/ and README "Serving").

Every option's default is the server settings' default (:class:`vqnat_server.settings.Settings`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer
from vqnat_cli.errors import friendly_errors
from vqnat_server.settings import default

logger = logging.getLogger(__name__)


@friendly_errors
def serve(
    nat: Path | None = typer.Option(None, "--nat", help="Latent-transformer model (bundle folder or .pt), served "
                                    "as model \"nat\". Without --nat and --teacher: the default bundles."),
    teacher: Path | None = typer.Option(None, "--teacher", help="Autoregressive model (bundle folder or .pt), "
                                        "served as model \"teacher\"."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Folder with the dictionaries (dict.*.txt) of a "
                                         ".pt checkpoint, or the `vqnat prepare` folder that holds it; default: the "
                                         "folder recorded in the checkpoint."),
    trust_checkpoint: bool = typer.Option(default("trust_checkpoint"), "--trust-checkpoint", help="Unpickle .pt "
                                          "checkpoints from outside vqnat's own training folders (a pickle can run "
                                          "code). The server never unpickles those unless started with this flag."),
    host: str = typer.Option(default("host"), help="Address to bind. The default is loopback only; the service "
                             "has no TLS: another address needs --allow-remote."),
    allow_remote: bool = typer.Option(default("allow_remote"), "--allow-remote", envvar="VQNAT_ALLOW_REMOTE",
                                      help="Allow binding an address other machines can reach (put a TLS proxy in "
                                      "front, and set --api-key)."),
    port: int = typer.Option(default("port"), min=0, max=65535, help="Port to bind."),
    workers: int = typer.Option(default("workers"), min=1, help="uvicorn worker processes; each loads its own copy "
                                "of the models (the parent process loads none)."),
    device: str = typer.Option(default("device"), help="cpu or cuda."),
    teacher_beam: int = typer.Option(default("teacher_beam"), min=1, help="Default beam of the teacher."),
    max_beam: int = typer.Option(default("max_beam"), min=1, help="Largest beam a request may ask for."),
    max_batch_sentences: int = typer.Option(default("max_batch_sentences"), min=1,
                                            help="Sentences per model batch (1 disables batching)."),
    max_batch_tokens: int = typer.Option(default("max_batch_tokens"), min=1,
                                         help="Source subword tokens per model batch."),
    max_wait_ms: float = typer.Option(default("max_wait_ms"), min=0, help="How long a batch waits for more "
                                      "sentences after its first one (milliseconds)."),
    max_sentences: int = typer.Option(default("max_sentences_per_request"), "--max-sentences", min=1,
                                      help="Sentences per request (else 413)."),
    max_chars: int = typer.Option(default("max_chars_per_sentence"), "--max-chars", min=1,
                                  help="Characters per sentence (else 413)."),
    max_body_bytes: int = typer.Option(default("max_body_bytes"), min=1, help="Request body size (else 413)."),
    max_request_cost: int = typer.Option(default("max_request_cost"), min=1, help="Largest estimated cost of one "
                                         "request, per model (else 413). A sentence of n subword tokens costs "
                                         "n x beam x (1.2 n + 10)."),
    max_queued_cost: int = typer.Option(default("max_queued_cost"), min=1, help="Estimated cost a model may have "
                                        "queued and running (else 429 with Retry-After)."),
    request_timeout: float = typer.Option(default("request_timeout_s"), "--request-timeout", min=0.001,
                                          help="Seconds a request may wait for its translation (else 503); its "
                                          "work is then dropped."),
    header_timeout: float = typer.Option(default("header_timeout_s"), "--header-timeout", min=0.001,
                                         help="Seconds a connection has to send a request's headers (else it is "
                                         "closed)."),
    body_timeout: float = typer.Option(default("body_timeout_s"), "--body-timeout", min=0.001,
                                       help="Seconds a request has to send its body after its headers (else 408)."),
    keep_alive_timeout: int = typer.Option(default("keep_alive_timeout_s"), "--keep-alive-timeout", min=1,
                                           help="Seconds an idle kept-alive connection stays open."),
    max_connections: int = typer.Option(default("max_connections"), min=1, help="Open connections and requests "
                                        "in flight per worker; beyond, uvicorn answers 503."),
    max_header_bytes: int = typer.Option(default("max_header_bytes"), min=1,
                                         help="Size of a request's line and headers (else 400)."),
    shutdown_timeout: float = typer.Option(default("shutdown_timeout_s"), "--shutdown-timeout", min=0.001,
                                           help="On SIGTERM, seconds for requests in flight to finish (keep it "
                                           "under the stop grace period of Docker or the orchestrator)."),
    api_key: str | None = typer.Option(None, envvar="VQNAT_API_KEY", help="When set, /v1/* (and /metrics, /docs, "
                                       "/openapi.json) require this key in the X-API-Key header (or set "
                                       "VQNAT_API_KEY). Printable ASCII, no spaces."),
    open_docs_and_metrics: bool = typer.Option(default("open_docs_and_metrics"), "--open-docs-and-metrics",
                                               help="With --api-key, leave /metrics, /docs and /openapi.json open."),
    threads: int | None = typer.Option(None, min=1, help="torch threads per worker (default: torch's choice)."),
    gil_switch_ms: float = typer.Option(default("gil_switch_interval_ms"), min=0.01, help="Python's GIL switch "
                                        "interval while serving (the interpreter's default is 5): lower lets "
                                        "requests in during model calls."),
    log_level: str = typer.Option(default("log_level"), help="Log level of the server and uvicorn."),
) -> None:
    """Serve translations over HTTP: POST /v1/translate, GET /v1/models, /health, /ready, /metrics.

    Models load once at start-up, in each worker process. Without --nat/--teacher the shipped bundles are served.

    Example: vqnat serve --port 8000

    Example: vqnat serve --nat work/nat-soft/checkpoint_best.pt --teacher models/bible-en-de-teacher --api-key KEY
    """
    import uvicorn
    from vqnat_server.connection import uvicorn_options
    from vqnat_server.settings import ENV_VAR, Settings

    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    if nat is None and teacher is None:
        nat, teacher = _default_models()
    for flag, path in (("--nat", nat), ("--teacher", teacher)):
        if path is not None and not path.exists():
            raise ValueError(f"{flag}: model not found: {path}")
    settings = Settings(nat=nat, teacher=teacher, data_dir=data_dir, trust_checkpoint=trust_checkpoint,
                        device=device, teacher_beam=teacher_beam, max_beam=max_beam, host=host, port=port,
                        allow_remote=allow_remote, max_batch_sentences=max_batch_sentences,
                        max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                        max_sentences_per_request=max_sentences, max_chars_per_sentence=max_chars,
                        max_body_bytes=max_body_bytes, max_request_cost=max_request_cost,
                        max_queued_cost=max_queued_cost, request_timeout_s=request_timeout,
                        header_timeout_s=header_timeout, body_timeout_s=body_timeout,
                        keep_alive_timeout_s=keep_alive_timeout, max_connections=max_connections,
                        max_header_bytes=max_header_bytes, shutdown_timeout_s=shutdown_timeout,
                        api_key=api_key or None, open_docs_and_metrics=open_docs_and_metrics, torch_threads=threads,
                        gil_switch_interval_ms=gil_switch_ms, log_level=log_level, workers=workers)
    if not settings.api_key and settings.allow_remote:
        logger.warning("serving %s without an API key (--api-key)", host)
    options = uvicorn_options(settings)
    if workers == 1:
        from vqnat_server.app import create_app
        from vqnat_server.served import load_translators

        translators = load_translators(settings)  # fails here, with one line, on a bad model
        uvicorn.run(create_app(settings, translators), **options)
    else:  # each worker process loads its own copy; the parent imports neither torch nor the models
        os.environ[ENV_VAR] = settings.to_env()
        # each spawned worker re-imports this CLI (torch, fairseq) before it can answer uvicorn's health pings:
        # give it time, or the supervisor kills and restarts it forever
        uvicorn.run("vqnat_server.app:create_app_from_env", factory=True, workers=workers,
                    timeout_worker_healthcheck=120, **options)


def _default_models() -> tuple[Path | None, Path | None]:
    """The default NAT and teacher bundles; those that are missing are left out (both missing: the error)."""
    from vqnat.checkpoint import default_model

    found: dict[str, Path | None] = {}
    errors = []
    for role in ("nat", "teacher"):
        try:
            found[role] = default_model(role)
        except ValueError as err:
            found[role] = None
            errors.append(str(err))
    if found["nat"] is None and found["teacher"] is None:
        raise ValueError(f"nothing to serve: give --nat and/or --teacher ({errors[0]})")
    return found["nat"], found["teacher"]
