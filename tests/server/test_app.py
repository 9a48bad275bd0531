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
    assert all(m["parameters"] > 0 and m["checkpoint"].endswith(".pt") for m in body["models"])
    assert body["default_model"] == "nat"
    assert body["limits"] == {"max_sentences_per_request": 8, "max_chars_per_sentence": 300, "max_body_bytes": 8192}
    assert body["batching"]["max_wait_ms"] == 2.0


def test_health_and_ready(client):
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").json() == {"status": "ready", "models": ["nat", "teacher"]}


def test_not_ready_before_the_models_are_loaded(base_settings, translators):
    from fastapi.testclient import TestClient

    from server.app import create_app

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
    (b'{"text": ["a\\ud800b"]}', JSON, 422, "invalid_character"),  # a lone surrogate, valid JSON
    (b'{"text": ["a"]}', {"content-type": "text/plain"}, 422, "invalid_request"),
    (b'{"text": ["a"]}', {"content-type": "application/x-www-form-urlencoded"}, 422, "invalid_request"),
])
def test_malformed_bodies_get_a_clear_4xx(client, body, headers, status, code):
    assert_error(client.post("/v1/translate", content=body, headers=headers), status, code)


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


def test_requests_after_the_models_closed_get_503(client):
    models = client.app.state.models
    for model in models.values():
        client.portal.call(model.close)
    assert_error(client.post("/v1/translate", json={"text": JOHN[:1]}), 503, "shutting_down", "retry")


def test_gil_switch_interval_is_set_while_serving_and_restored(base_settings, translators):
    import dataclasses
    import sys

    from fastapi.testclient import TestClient

    from server.app import create_app

    before = sys.getswitchinterval()
    settings = dataclasses.replace(base_settings, gil_switch_interval_ms=0.5)
    with TestClient(create_app(settings, translators)):
        assert sys.getswitchinterval() == pytest.approx(0.0005)
    assert sys.getswitchinterval() == before
