"""The FastAPI translation service: ``create_app(settings)``. A thin layer over ``vqnat.inference.Translator``.

Models load once, in the lifespan, onto ``app.state.models``; requests go through a dynamic batcher per model
(:mod:`vqnat_server.batching`), so the event loop never runs a model. Every error is a JSON body
``{"error": code, "message": text}`` with a 4xx status (a 5xx only for a real server fault).

Checkpoints are Python pickles: serve only checkpoints you trust.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import Depends, FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException
from vqnat_server import metrics as metrics_module
from vqnat_server.batching import BatcherClosed
from vqnat_server.metrics import Metrics
from vqnat_server.middleware import ApiKeyMiddleware, BodyLimitMiddleware, CancelOnDisconnect, MetricsMiddleware
from vqnat_server.schemas import (
    BatchingInfo,
    ErrorResponse,
    LimitsInfo,
    ModelInfo,
    ModelsResponse,
    StatusResponse,
    TranslateRequest,
    TranslateResponse,
)
from vqnat_server.served import Overloaded, RequestTooCostly, ServedModel, load_translators
from vqnat_server.settings import API_KEY_HEADER, Settings

import vqnat
from vqnat.inference import Translator

logger = logging.getLogger(__name__)

# Unicode categories Cc (C0, DEL, C1) and Cs (lone surrogates, which JSON can carry) but tab, newline and CR
FORBIDDEN_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
WHITESPACE_CONTROLS = re.compile("[\t\n\r]")  # read as spaces
ENDPOINTS = ("/v1/translate", "/v1/models", "/health", "/ready", "/metrics", "/openapi.json", "/docs")
DOCS_AND_METRICS = ("/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


class ApiError(StarletteHTTPException):
    """An HTTP error with a short machine-readable code next to the message."""

    def __init__(self, status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=message, headers=headers)
        self.code = code


def _error(status: int, code: str, message: str, details: list[dict[str, object]] | None = None,
           headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse(error=code, message=message, details=details).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 422, 429, 503)}


def protected_paths(settings: Settings):
    """Which paths need the API key (when one is set): /v1/*, and the docs and metrics unless left open."""
    def protected(path: str) -> bool:
        return path.startswith("/v1/") or (not settings.open_docs_and_metrics and path in DOCS_AND_METRICS)

    return protected


# ---------------------------------------------------------------------------------------------- checks
def _check_sentences(texts: list[str], settings: Settings) -> list[str]:
    """Apply the request limits; return the sentences with tab/newline/CR read as spaces."""
    if len(texts) > settings.max_sentences_per_request:
        raise ApiError(413, "too_many_sentences",
                       f"{len(texts)} sentences in one request; the limit is {settings.max_sentences_per_request} "
                       "(max_sentences_per_request): split the request")
    cleaned = []
    for i, text in enumerate(texts):
        if len(text) > settings.max_chars_per_sentence:
            raise ApiError(413, "sentence_too_long",
                           f"sentence {i} has {len(text)} characters; the limit is "
                           f"{settings.max_chars_per_sentence} (max_chars_per_sentence): split it")
        bad = FORBIDDEN_CHARS.search(text)
        if bad is not None:
            char = bad.group()
            kind = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "the control character"
            raise ApiError(422, "invalid_character",
                           f"sentence {i} contains {kind} U+{ord(char):04X} at position {bad.start()}; only tab, "
                           "newline and carriage return are allowed among control characters")
        cleaned.append(WHITESPACE_CONTROLS.sub(" ", text))
    return cleaned


# ---------------------------------------------------------------------------------------------- the app
def create_app(settings: Settings, translators: Mapping[str, Translator] | None = None) -> FastAPI:
    """The service for ``settings``. ``translators`` (name -> loaded Translator) skips loading checkpoints."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        switch_interval = sys.getswitchinterval()
        if settings.gil_switch_interval_ms is not None:
            sys.setswitchinterval(settings.gil_switch_interval_ms / 1000)
        loaded = dict(translators) if translators is not None else await asyncio.to_thread(load_translators,
                                                                                           settings)
        await asyncio.to_thread(_warm_up, loaded)
        app.state.models = {name: ServedModel(name, t, settings, metrics) for name, t in loaded.items()}
        app.state.ready = True
        logger.info("serving %s on vqnat %s", ", ".join(app.state.models), vqnat.__version__)
        try:
            yield
        finally:
            app.state.ready = False
            await asyncio.gather(*(model.close() for model in app.state.models.values()))
            sys.setswitchinterval(switch_interval)
            logger.info("models closed")

    app = FastAPI(title="vqnat translation service", version=vqnat.__version__, lifespan=lifespan,
                  description="Non-autoregressive translation with vector-quantized latents, dynamically batched.")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.models = {}
    app.state.ready = False
    # added innermost first: metrics (outermost: counts every answer) > key > body limits > cancellation
    app.add_middleware(CancelOnDisconnect)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s,
                       error=_error)
    app.add_middleware(ApiKeyMiddleware, key=settings.api_key, header=API_KEY_HEADER,
                       protected=protected_paths(settings), error=_error, body_timeout_s=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=ENDPOINTS)
    _add_error_handlers(app)

    # documents the header in the OpenAPI schema; ApiKeyMiddleware checks it, before the body is read
    api_key_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False,
                                  description="Required when the server was started with --api-key.")
    require_api_key = Security(api_key_header)

    async def served(request: Request) -> dict[str, ServedModel]:  # async: no thread-pool hop per request
        if not request.app.state.ready:
            raise ApiError(503, "not_ready", "the models are not loaded (starting or shutting down); retry")
        return request.app.state.models

    @app.post("/v1/translate", response_model=TranslateResponse, responses=ERRORS,
              dependencies=[require_api_key], summary="Translate a list of sentences")
    async def translate(body: TranslateRequest, request: Request,
                        models: dict[str, ServedModel] = Depends(served)) -> TranslateResponse:
        start = time.perf_counter()
        name = body.model or ("nat" if "nat" in models else "teacher")
        model = models.get(name)
        if model is None:
            raise ApiError(422, "model_not_loaded", f"model {name!r} is not loaded here; loaded: "
                           f"{', '.join(sorted(models))} (see GET /v1/models)")
        if body.beam is not None:
            if model.kind != "autoregressive":
                raise ApiError(422, "beam_not_supported", f"beam applies to the autoregressive teacher only, "
                               f"not to {name!r} (it decodes in one parallel pass)")
            if body.beam > settings.max_beam:
                raise ApiError(422, "beam_too_large", f"beam={body.beam}; the limit is {settings.max_beam}")
        prepared = model.prepare(_check_sentences(body.text, settings), body.beam)  # encoded once, here
        try:
            model.admit(prepared)
        except RequestTooCostly as err:
            raise ApiError(413, "request_too_costly", str(err)) from err
        except Overloaded as err:
            raise ApiError(429, "overloaded", str(err), headers={"Retry-After": "1"}) from err
        client = request.client.host if request.client else None
        try:
            translations = await asyncio.wait_for(model.translate(prepared, client), settings.request_timeout_s)
        except BatcherClosed as err:
            raise ApiError(503, "shutting_down", f"{err}; retry on another instance") from err
        except TimeoutError as err:
            raise ApiError(503, "timeout", f"no translation within {settings.request_timeout_s:g} s: the server "
                           "is overloaded; retry later") from err
        except ValueError as err:  # the library refused the input
            raise ApiError(422, "invalid_input", str(err)) from err
        return TranslateResponse(translations=translations, model=name,
                                 latency_ms=round((time.perf_counter() - start) * 1e3, 3))

    @app.get("/v1/models", response_model=ModelsResponse, responses=ERRORS,
             dependencies=[require_api_key], summary="Loaded models and the server's settings")
    async def list_models(models: dict[str, ServedModel] = Depends(served)) -> ModelsResponse:
        return ModelsResponse(
            models=[ModelInfo(**model.describe()) for model in models.values()],
            default_model="nat" if "nat" in models else "teacher",
            batching=BatchingInfo(max_batch_sentences=settings.max_batch_sentences,
                                  max_batch_tokens=settings.max_batch_tokens, max_wait_ms=settings.max_wait_ms),
            limits=LimitsInfo(max_sentences_per_request=settings.max_sentences_per_request,
                              max_chars_per_sentence=settings.max_chars_per_sentence,
                              max_body_bytes=settings.max_body_bytes, max_request_cost=settings.max_request_cost,
                              max_queued_cost=settings.max_queued_cost))

    @app.get("/health", response_model=StatusResponse, summary="Liveness: the process answers")
    async def health(request: Request) -> StatusResponse:
        return StatusResponse(status="ok", models=sorted(request.app.state.models))

    @app.get("/ready", response_model=StatusResponse, responses={503: {"model": ErrorResponse}},
             summary="Readiness: the models are loaded")
    async def ready(models: dict[str, ServedModel] = Depends(served)) -> StatusResponse:
        return StatusResponse(status="ready", models=sorted(models))

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format)",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus_metrics() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=metrics_module.CONTENT_TYPE)

    return app


def _warm_up(translators: Mapping[str, Translator]) -> None:
    """One throwaway translation per model, so the first request does not pay for lazy initialisation."""
    for translator in translators.values():
        translator.translate(["warm up"])


def create_app_from_env() -> FastAPI:
    """Factory for multi-worker uvicorn: the settings come from ``VQNAT_SERVER_SETTINGS`` (set by vqnat serve).

    A worker process starts with Python's default logging; it logs at the server's level, as one process would.
    """
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level.upper(), force=True,
                        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s")
    return create_app(settings)


# ---------------------------------------------------------------------------------------------- errors
def _unreadable_body(cause: BaseException | None) -> tuple[str, str]:
    """Code and message for a body FastAPI could not decode, from the error the JSON reader raised."""
    if isinstance(cause, UnicodeDecodeError):
        return "invalid_body", f"the body is not UTF-8 text (byte {cause.start}): send JSON encoded as UTF-8"
    if isinstance(cause, RecursionError):
        return "invalid_json", "the JSON nests arrays or objects too deeply to be read"
    if isinstance(cause, ValueError) and "digits" in str(cause):
        return "invalid_json", f"the JSON holds a number with too many digits to be read ({cause})"
    return "invalid_body", "the body could not be read as JSON"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = getattr(exc, "code", None) or HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        if exc.status_code == 400 and not hasattr(exc, "code"):  # FastAPI could not decode the body
            code, message = _unreadable_body(exc.__cause__)
        return _error(exc.status_code, code, message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in errors]
        if any(e["type"] == "json_invalid" for e in details):
            return _error(400, "invalid_json", "the body is not valid JSON", details)
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:]) or "body"
        message = f"{where}: {first['msg']}"
        if first.get("type") == "model_attributes_type" and first["loc"] == ["body"]:
            message = 'the body must be a JSON object like {"text": ["..."]} sent as Content-Type: application/json'
        return _error(422, "invalid_request", message, details)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "the server failed on this request; it has been logged")
