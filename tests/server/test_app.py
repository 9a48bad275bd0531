"""Every endpoint and every error of the service, through TestClient (lifespan runs) on tiny real models."""

from __future__ import annotations

import pytest

JOHN = ["In the beginning was the Word, and the Word was with God, and the Word was God.",
        "The same was in the beginning with God.",
        "All things were made through him."]


def assert_error(response, status: int, code: str, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code and body["message"], body
    for word in words:
        assert word in body["message"], body["message"]
    return body


# ------------------------------------------------------------------------------------------------ translate
def test_translate_defaults_to_nat_and_matches_the_library(client, translators):
    response = client.post("/v1/translate", json={"text": JOHN})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "nat" and body["latency_ms"] > 0
    assert body["translations"] == translators["nat"].translate(JOHN)


def test_translate_with_the_teacher_and_a_beam(client):
    for beam in (None, 1, 3):
        payload = {"text": JOHN[:2], "model": "teacher"} | ({"beam": beam} if beam else {})
        response = client.post("/v1/translate", json=payload)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "teacher"
        assert len(body["translations"]) == 2 and all(isinstance(t, str) and t for t in body["translations"])


def test_empty_and_whitespace_sentences_translate_to_empty_strings(client, translators):
    response = client.post("/v1/translate", json={"text": ["", "   ", JOHN[1], "\t\n"]})
    assert response.status_code == 200, response.text
    assert response.json()["translations"] == ["", "", translators["nat"].translate([JOHN[1]])[0], ""]


def test_tabs_and_newlines_read_as_spaces(client, translators):
    response = client.post("/v1/translate", json={"text": ["The same was\tin the beginning\nwith God."]})
    assert response.status_code == 200
    assert response.json()["translations"] == translators["nat"].translate([JOHN[1]])


def test_unknown_words_still_translate(client):
    response = client.post("/v1/translate", json={"text": ["Zyzzyva qwxzt Ünïcødé 漢字 🙂"]})
    assert response.status_code == 200 and isinstance(response.json()["translations"][0], str)


def test_a_teacher_only_server_defaults_to_the_teacher(make_client):
    response = make_client(nat=None).post("/v1/translate", json={"text": JOHN[:1]})
    assert response.status_code == 200 and response.json()["model"] == "teacher"


# ------------------------------------------------------------------------------------------------ other endpoints
def test_models_lists_loaded_models_and_settings(client):
    body = client.get("/v1/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert by_name["nat"]["kind"] == "nat" and by_name["nat"]["beam"] is None
    assert by_name["teacher"]["kind"] == "autoregressive" and by_name["teacher"]["beam"] == 1
    assert all(m["parameters"] > 0 and m["checkpoint"] == "checkpoint_last.pt" for m in body["models"])  # no path
    assert body["default_model"] == "nat"
    assert body["limits"] == {"max_sentences_per_request": 8, "max_chars_per_sentence": 300, "max_body_bytes": 8192,
                              "max_request_cost": 2_000_000, "max_queued_cost": 8_000_000}
    assert body["batching"]["max_wait_ms"] == 2.0


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok", "models": ["nat", "teacher"]}
    assert client.get("/ready").json() == {"status": "ready", "models": ["nat", "teacher"]}


def test_not_ready_before_the_models_are_loaded(base_settings, translators):
    from fastapi.testclient import TestClient
    from vqnat_server.app import create_app

    client = TestClient(create_app(base_settings, translators))  # not entered: the lifespan has not run
    assert client.get("/health").status_code == 200
    assert_error(client.get("/ready"), 503, "not_ready")
    assert_error(client.post("/v1/translate", json={"text": ["a"]}), 503, "not_ready")


def test_metrics_count_requests_batches_and_latencies(client):
    client.post("/v1/translate", json={"text": JOHN})
    client.post("/v1/translate", json={"text": []})
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert 'vqnat_http_requests_total{endpoint="/v1/translate",method="POST",status="200"} 1' in lines
    assert 'vqnat_http_requests_total{endpoint="/v1/translate",method="POST",status="422"} 1' in lines
    assert 'vqnat_sentences_translated_total{model="nat"} 3' in lines
    assert 'vqnat_batch_size_sentences_count{model="nat"} 1' in lines
    assert 'vqnat_batch_size_sentences_bucket{model="nat",le="4"} 1' in lines
    assert any(line.startswith('vqnat_http_request_duration_seconds_sum{endpoint="/v1/translate"}') for line in lines)
    assert "# TYPE vqnat_batch_duration_seconds histogram" in lines


def test_openapi_documents_the_api(client):
    schema = client.get("/openapi.json").json()
    assert {"/v1/translate", "/v1/models", "/health", "/ready", "/metrics"} <= set(schema["paths"])
    props = schema["components"]["schemas"]["TranslateRequest"]["properties"]
    assert {"text", "model", "beam"} <= set(props)


# ------------------------------------------------------------------------------------------------ bad input
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(("payload", "status", "code", "words"), [
    ({"text": []}, 422, "invalid_request", ["text"]),
    ({"text": "a single string"}, 422, "invalid_request", ["list"]),
    ({"text": [1, 2]}, 422, "invalid_request", ["text.0", "string"]),
    ({"text": [None]}, 422, "invalid_request", ["string"]),
    ({}, 422, "invalid_request", ["text"]),
    ({"text": ["a"], "extra": 1}, 422, "invalid_request", ["extra"]),
    ({"text": ["a"], "model": "gpt"}, 422, "invalid_request", ["nat", "teacher"]),
    ({"text": ["a"], "beam": 2}, 422, "beam_not_supported", ["teacher"]),
    ({"text": ["a"], "model": "teacher", "beam": 0}, 422, "invalid_request", ["beam"]),
    ({"text": ["a"], "model": "teacher", "beam": 9}, 422, "beam_too_large", ["8"]),
    ({"text": ["a"], "model": "teacher", "beam": "2"}, 422, "invalid_request", ["beam"]),
    ({"text": ["a"], "model": "teacher", "beam": 2.5}, 422, "invalid_request", ["beam"]),
    ({"text": ["a"], "model": "teacher", "beam": True}, 422, "invalid_request", ["beam"]),
    ({"text": ["a"] * 9}, 413, "too_many_sentences", ["9", "limit is 8"]),
    ({"text": ["ok", "x" * 301]}, 413, "sentence_too_long", ["sentence 1", "301", "300"]),
    ({"text": ["a\x00b"]}, 422, "invalid_character", ["U+0000"]),
    ({"text": ["ok", "bell\x07"]}, 422, "invalid_character", ["sentence 1", "U+0007"]),
    ({"text": ["esc \x1b[31m red"]}, 422, "invalid_character", ["U+001B"]),
    ({"text": ["del \x7f"]}, 422, "invalid_character", ["U+007F"]),
    (["a", "list"], 422, "invalid_request", ["JSON object"]),
])
def test_bad_requests_get_a_clear_4xx(client, payload, status, code, words):
    assert_error(client.post("/v1/translate", json=payload), status, code, *words)


@pytest.mark.parametrize(("body", "headers", "status", "code"), [
    (b'{"text": ["a"', JSON, 400, "invalid_json"),
    (b"not json at all", JSON, 400, "invalid_json"),
    (b"", JSON, 422, "invalid_request"),
    (b'{"text": ["\xff\xfe caf\xe9"]}', JSON, 400, "invalid_body"),  # latin-1, not UTF-8
    (b'{"text": ["a"], "beam": ' + b"9" * 5000 + b"}", JSON, 400, "invalid_json"),
    (b"[" * 3000 + b"]" * 3000, JSON, 400, "invalid_json"),
    (b'{"text": ["a\\ud800b"]}', JSON, 422, "invalid_character"),  # a lone surrogate, valid JSON
    (b'{"text": ["a"]}', {"content-type": "text/plain"}, 422, "invalid_request"),
    (b'{"text": ["a"]}', {"content-type": "application/x-www-form-urlencoded"}, 422, "invalid_request"),
])
def test_malformed_bodies_get_a_clear_4xx(client, body, headers, status, code):
    assert_error(client.post("/v1/translate", content=body, headers=headers), status, code)


@pytest.mark.parametrize(("body", "words"), [
    (b'{"text": ["\xff\xfe caf\xe9"]}', ["not UTF-8", "byte 11"]),
    (b'{"text": ["a"], "beam": ' + b"9" * 5000 + b"}", ["number", "digits"]),
    (b"[" * 3000 + b"]" * 3000, ["nests", "deeply"]),
])
def test_unreadable_bodies_are_told_what_is_wrong(client, body, words):
    message = client.post("/v1/translate", content=body, headers=JSON).json()["message"]
    assert all(word in message for word in words), message


def test_an_integral_number_is_an_integer_as_the_schema_says(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["TranslateRequest"]["properties"]["beam"]
    assert {"type": "integer", "minimum": 1} in schema["anyOf"]  # JSON Schema: 2.0 is an integer
    response = client.post("/v1/translate", json={"text": ["a"], "model": "teacher", "beam": 2.0})
    assert response.status_code == 200, response.text


def test_oversized_bodies_are_refused_before_parsing(client):
    big = b'{"text": ["' + b"a" * 9000 + b'"]}'
    assert_error(client.post("/v1/translate", content=big, headers=JSON), 413, "body_too_large", "8192")

    def chunks():  # no Content-Length: the server counts the stream
        yield b'{"text": ["'
        for _ in range(100):
            yield b"a" * 100
        yield b'"]}'

    assert_error(client.post("/v1/translate", content=chunks(), headers=JSON), 413, "body_too_large")


def test_teacher_not_loaded(make_client):
    assert_error(make_client(teacher=None).post("/v1/translate", json={"text": ["a"], "model": "teacher"}),
                 422, "model_not_loaded", "nat")


def test_unknown_routes_and_methods(client):
    assert_error(client.get("/v2/translate"), 404, "not_found")
    assert_error(client.get("/v1/translate"), 405, "method_not_allowed")
    assert_error(client.delete("/health"), 405, "method_not_allowed")


def test_a_request_that_waits_too_long_gets_503(make_client):
    assert_error(make_client(request_timeout_s=1e-6).post("/v1/translate", json={"text": JOHN}), 503, "timeout")


# ------------------------------------------------------------------------------------------------ API key
def test_api_key_protects_v1_but_not_probes(make_client):
    client = make_client(api_key="s3cret")
    assert_error(client.post("/v1/translate", json={"text": ["a"]}), 401, "unauthorized", "X-API-Key")
    assert_error(client.post("/v1/translate", json={"text": ["a"]}, headers={"X-API-Key": "wrong"}), 401,
                 "unauthorized")
    assert_error(client.get("/v1/models"), 401, "unauthorized")
    assert client.post("/v1/translate", json={"text": ["a"]}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    for path in ("/metrics", "/openapi.json", "/docs"):  # closed too, unless left open
        assert_error(client.get(path), 401, "unauthorized")
        assert client.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200


def test_docs_and_metrics_can_be_left_open_with_a_key(make_client):
    client = make_client(api_key="s3cret", open_docs_and_metrics=True)
    for path in ("/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200
    assert_error(client.get("/v1/models"), 401, "unauthorized")


def test_the_key_is_checked_before_the_body_is_read(make_client):
    client = make_client(api_key="s3cret")
    assert_error(client.post("/v1/translate", content=b"{not json", headers=JSON), 401, "unauthorized")
    assert_error(client.post("/v1/translate", content=b"x" * 20000, headers=JSON), 401, "unauthorized")


@pytest.mark.parametrize("key", ["", "schlüssel", "two words", "tab\there", "bell\x07"])
def test_api_keys_must_be_printable_ascii(base_settings, key):
    import dataclasses

    with pytest.raises(ValueError, match="printable ASCII"):
        dataclasses.replace(base_settings, api_key=key)


@pytest.mark.parametrize(("host", "allowed"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                               ("127.0.0.2", True), ("0.0.0.0", False), ("::", False),
                                               ("192.168.1.5", False), ("example.org", False)])
def test_binding_beyond_loopback_needs_allow_remote(base_settings, host, allowed):
    import dataclasses

    if allowed:
        dataclasses.replace(base_settings, host=host)
    else:
        with pytest.raises(ValueError, match="--allow-remote"):
            dataclasses.replace(base_settings, host=host)
    assert dataclasses.replace(base_settings, host=host, allow_remote=True).host == host


def test_requests_after_the_models_closed_get_503(client):
    models = client.app.state.models
    for model in models.values():
        client.portal.call(model.close)
    assert_error(client.post("/v1/translate", json={"text": JOHN[:1]}), 503, "shutting_down", "retry")


def test_gil_switch_interval_is_set_while_serving_and_restored(base_settings, translators):
    import dataclasses
    import sys

    from fastapi.testclient import TestClient
    from vqnat_server.app import create_app

    before = sys.getswitchinterval()
    settings = dataclasses.replace(base_settings, gil_switch_interval_ms=0.5)
    with TestClient(create_app(settings, translators)):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert sys.getswitchinterval() == before


# ------------------------------------------------------------------------------------------------ cost admission
LONG = " ".join(JOHN[1:] * 3)  # about 40 words, under max_chars_per_sentence


def test_a_request_that_alone_exceeds_the_cost_limit_gets_413(make_client):
    client = make_client(max_request_cost=20_000, max_queued_cost=20_000)
    body = assert_error(client.post("/v1/translate", json={"text": [LONG] * 8, "model": "teacher", "beam": 8}),
                        413, "request_too_costly", "max_request_cost", "20,000")
    assert "beam" in body["message"]
    assert client.post("/v1/translate", json={"text": JOHN[1:2], "model": "teacher"}).status_code == 200


def test_the_cost_grows_with_tokens_beam_and_length(client):
    model = client.app.state.models["teacher"]
    short, long = model.prepare([JOHN[1]]), model.prepare([LONG])
    assert long.cost > 10 * short.cost  # quadratic in length: more tokens, each with a longer output
    assert model.prepare([JOHN[1]], beam=4).cost == 4 * short.cost
    assert model.prepare(["", JOHN[1], "  "]).cost == short.cost  # blank sentences cost nothing
    assert short.ids[0].tolist() == model.translator.encode(JOHN[1]).tolist()  # encoded once, kept for the model


def test_work_over_the_queue_limit_gets_429_until_the_queue_drains(base_settings, translators):
    import asyncio
    import dataclasses
    import threading

    from vqnat_server.metrics import Metrics
    from vqnat_server.served import Overloaded, ServedModel

    settings = dataclasses.replace(base_settings, max_request_cost=200, max_queued_cost=200)

    async def main():
        model = ServedModel("teacher", translators["teacher"], settings, Metrics())
        first, second = model.prepare([JOHN[1]]), model.prepare([JOHN[2]])
        assert first.cost + second.cost > 200 >= max(first.cost, second.cost)
        release = threading.Event()
        model._executor.submit(release.wait, 30)  # the model thread is busy: work queues up
        model.admit(first)
        queued = asyncio.create_task(model.translate(first))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded, match="max_queued_cost"):
            model.admit(second)
        release.set()
        await queued
        model.admit(second)  # admitted once the queue drained
        await model.close()

    asyncio.run(main())


def test_a_client_that_drops_mid_body_is_counted_as_a_disconnect_not_a_500(client):
    messages = iter([{"type": "http.request", "body": b'{"text": [', "more_body": True},
                     {"type": "http.disconnect"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/translate", "headers": [(b"content-type",
             b"application/json"), (b"content-length", b"100")], "query_string": b"", "root_path": "",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "http_version": "1.1"}
    client.portal.call(client.app, scope, receive, send)
    assert sent == []  # nothing could be sent
    lines = client.get("/metrics").text.splitlines()
    assert 'vqnat_http_client_disconnects_total{endpoint="/v1/translate",method="POST"} 1' in lines
    assert not any(line.startswith("vqnat_http_requests_total") and 'status="500"' in line for line in lines)


def test_a_caller_that_disconnects_while_waiting_has_its_work_dropped(client):
    import asyncio
    import json
    import threading

    model = client.app.state.models["nat"]
    release = threading.Event()
    model._executor.submit(release.wait, 30)  # the model thread is busy: the request queues
    body = json.dumps({"text": JOHN}).encode()
    sent = []

    async def call() -> int:
        gone = asyncio.Event()
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if messages:
                return messages.pop()
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/translate", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000),
                 "http_version": "1.1"}
        handler = asyncio.ensure_future(client.app(scope, receive, send))
        while model._batchers.get(None) is None or not model._batchers[None].pending_cost:
            await asyncio.sleep(0.01)  # until the sentences are queued
        gone.set()  # the client goes away
        await handler
        release.set()  # the model thread is free again: the dropped batch must not run
        while model._batchers[None].pending_cost:
            await asyncio.sleep(0.01)

    try:
        client.portal.call(call)
    finally:
        release.set()
    assert sent == []  # nothing could be sent
    lines = client.get("/metrics").text.splitlines()
    assert 'vqnat_http_client_disconnects_total{endpoint="/v1/translate",method="POST"} 1' in lines
    assert not any(line.startswith('vqnat_sentences_translated_total{model="nat"}') for line in lines)  # not run
