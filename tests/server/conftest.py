"""Server fixtures: the session's tiny real checkpoints (tests/conftest.py), loaded once, and app factories."""

from __future__ import annotations

import dataclasses

import pytest
from vqnat_server.settings import Settings


@pytest.fixture(scope="session")
def base_settings(tiny_checkpoints) -> Settings:
    return Settings(nat=tiny_checkpoints.nat, teacher=tiny_checkpoints.teacher, trust_checkpoint=True,
                    max_sentences_per_request=8,
                    max_chars_per_sentence=300, max_body_bytes=8192, max_wait_ms=2.0)


@pytest.fixture(scope="session")
def translators(base_settings):
    """name -> loaded Translator, shared by every app of the session (loading is the slow part)."""
    from vqnat_server.served import load_translators

    return load_translators(base_settings)


@pytest.fixture
def make_client(base_settings, translators):
    """``make_client(**setting_overrides)`` -> a started TestClient (lifespan ran); closed after the test."""
    from fastapi.testclient import TestClient
    from vqnat_server.app import create_app

    clients = []

    def make(**overrides) -> TestClient:
        settings = dataclasses.replace(base_settings, **overrides)
        loaded = {name: translators[name] for name in settings.checkpoints}
        client = TestClient(create_app(settings, loaded), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client):
    return make_client()
