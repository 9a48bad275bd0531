"""``vqnat serve``: the FastAPI translation service under uvicorn (see server/ and README "Serving")."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from cli.errors import friendly_errors

logger = logging.getLogger(__name__)


@friendly_errors
def serve(
    nat: Path | None = typer.Option(None, "--nat", help="Latent-transformer checkpoint, served as model \"nat\"."),
    teacher: Path | None = typer.Option(None, "--teacher",
                                        help="Autoregressive checkpoint, served as model \"teacher\"."),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Folder with the dictionaries (dict.*.txt), "
                                         "or the `vqnat prepare` folder that holds it; default: the folder "
                                         "recorded in the checkpoint."),
    host: str = typer.Option("127.0.0.1", help="Address to bind. The default is loopback only; the service has "
                             "no TLS, so put a proxy in front before binding a public address."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to bind."),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes; each loads its own copy of the models."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    teacher_beam: int = typer.Option(1, min=1, help="Default beam of the teacher."),
    max_beam: int = typer.Option(8, min=1, help="Largest beam a request may ask for."),
    max_batch_sentences: int = typer.Option(64, min=1, help="Sentences per model batch (1 disables batching)."),
    max_batch_tokens: int = typer.Option(4096, min=1, help="Estimated source tokens per model batch."),
    max_wait_ms: float = typer.Option(5.0, min=0, help="How long a batch waits for more sentences after its "
                                      "first one (milliseconds)."),
    max_sentences: int = typer.Option(64, "--max-sentences", min=1, help="Sentences per request (else 413)."),
    max_chars: int = typer.Option(1000, "--max-chars", min=1, help="Characters per sentence (else 413)."),
    max_body_bytes: int = typer.Option(256 * 1024, min=1, help="Request body size (else 413)."),
    request_timeout: float = typer.Option(60.0, "--request-timeout", min=0.001,
                                          help="Seconds a request may wait for its translation (else 503)."),
    api_key: str | None = typer.Option(None, envvar="VQNAT_API_KEY", help="When set, /v1/* require this key in "
                                       "the X-API-Key header (or set VQNAT_API_KEY)."),
    threads: int | None = typer.Option(None, min=1, help="torch threads per worker (default: torch's choice)."),
    gil_switch_ms: float = typer.Option(1.0, min=0.01, help="Python's GIL switch interval while serving (the "
                                        "interpreter's default is 5): lower lets requests in during model calls."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Serve translations over HTTP: POST /v1/translate, GET /v1/models, /health, /ready, /metrics.

    Models load once at start-up. Checkpoints are Python pickles: serve only checkpoints you trust.
    """
    import uvicorn

    from server.app import create_app
    from server.served import load_translators
    from server.settings import ENV_VAR, Settings

    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    for flag, path in (("--nat", nat), ("--teacher", teacher)):
        if path is not None and not path.is_file():
            raise ValueError(f"{flag}: checkpoint not found: {path}")
    settings = Settings(nat=nat, teacher=teacher, data_dir=data_dir, device=device, teacher_beam=teacher_beam,
                        max_beam=max_beam, host=host, port=port, max_batch_sentences=max_batch_sentences,
                        max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms,
                        max_sentences_per_request=max_sentences, max_chars_per_sentence=max_chars,
                        max_body_bytes=max_body_bytes, request_timeout_s=request_timeout, api_key=api_key or None,
                        torch_threads=threads, gil_switch_interval_ms=gil_switch_ms)
    translators = load_translators(settings)  # fails here, with one line, on a bad checkpoint
    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: the service is reachable from other machines%s", host,
                       "" if api_key else " and has no API key (--api-key)")
    common = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=request_timeout)
    if workers == 1:
        uvicorn.run(create_app(settings, translators), **common)
    else:
        del translators  # each worker process loads its own copy
        os.environ[ENV_VAR] = settings.to_env()
        # each spawned worker re-imports this CLI (torch, fairseq) before it can answer uvicorn's health pings:
        # give it time, or the supervisor kills and restarts it forever
        uvicorn.run("server.app:create_app_from_env", factory=True, workers=workers, timeout_worker_healthcheck=120,
                    **common)
