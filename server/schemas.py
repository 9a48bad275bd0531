"""Request and response bodies of the HTTP API (they make the OpenAPI schema at /openapi.json).

Limits that depend on the settings (sentences per request, characters per sentence, beam) are checked by the
handler and answered with 413/422 messages that name the limit; the schema only states what is always true.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

ModelName = Literal["nat", "teacher"]


class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    text: list[str] = Field(min_length=1, description="Sentences to translate (source language), one per item. "
                            "An empty or whitespace-only sentence translates to \"\".",
                            examples=[["In the beginning was the Word."]])
    model: ModelName | None = Field(default=None, description="\"nat\" (the latent transformer, the default when "
                                    "loaded) or \"teacher\" (autoregressive).")
    beam: int | None = Field(default=None, ge=1, description="Beam size, teacher only (default: the server's "
                             "--teacher-beam, at most its max beam).")

    @field_validator("beam", mode="before")
    @classmethod
    def _integral_number(cls, value: object) -> object:
        """JSON Schema's "integer" is any number without a fractional part, so 2.0 is read as 2; strings,
        booleans and fractions stay refused."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class TranslateResponse(BaseModel):
    translations: list[str] = Field(description="One translation per input sentence, in the same order.")
    model: ModelName
    latency_ms: float = Field(description="Server time for this request, queueing and batching included.")


class ModelInfo(BaseModel):
    name: ModelName
    kind: str = Field(description="\"nat\" or \"autoregressive\"")
    checkpoint: str = Field(description="File or folder name of the model (not its path on the server).")
    architecture: str
    parameters: int
    beam: int | None = Field(description="Default beam (autoregressive models only).")
    max_beam: int | None
    max_source_positions: int = Field(description="Longer sources are truncated to this many subword tokens.")
    device: str


class BatchingInfo(BaseModel):
    max_batch_sentences: int
    max_batch_tokens: int
    max_wait_ms: float


class LimitsInfo(BaseModel):
    max_sentences_per_request: int
    max_chars_per_sentence: int
    max_body_bytes: int
    max_request_cost: int = Field(description="Largest estimated cost of one request (else 413); a sentence of n "
                                  "subword tokens costs n x beam x its output length limit.")
    max_queued_cost: int = Field(description="Work a model may have pending, per model (else 429).")


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    default_model: ModelName
    batching: BatchingInfo
    limits: LimitsInfo


class StatusResponse(BaseModel):
    status: str
    models: list[ModelName] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: str = Field(description="A short code, e.g. \"too_many_sentences\".")
    message: str = Field(description="What went wrong and the limit, for people.")
    details: list[dict[str, object]] | None = None
