"""The ``openai`` backend against a local fake OpenAI-compatible server (no network).

The fake answers from a script (one action per HTTP request) and records what it was asked:
good answers, invalid briefs, 500s, 400 for response_format, timeouts and bodies that are
not JSON.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from autoshoot.backends import VLMS
from autoshoot.brief import BriefRequest
from autoshoot.brief.prompt import EXAMPLE_BRIEF
from autoshoot.config import load_config

GOOD = json.dumps(EXAMPLE_BRIEF)


class FakeServer:
    """``script``: list of actions, popped per request; the last one repeats.

    An action is ("answer", text), ("status", code), ("sleep", seconds, then-action),
    ("raw", bytes) or ("reject_schema",) (400 when response_format is present, else good).
    """

    def __init__(self, script):
        self.script = list(script)
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                    action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self.act(action, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def act(self, action, body):
                kind = action[0]
                if kind == "sleep":
                    time.sleep(action[1])
                    return self.act(action[2], body)
                if kind == "status":
                    return self.send(action[1], b'{"error": "boom"}')
                if kind == "raw":
                    return self.send(200, action[1])
                if kind == "reject_schema" and "response_format" in body:
                    return self.send(400, b'{"error": "response_format not supported"}')
                text = action[1] if kind == "answer" else GOOD
                reply = {"choices": [{"message": {"role": "assistant", "content": text}}]}
                return self.send(200, json.dumps(reply).encode())

            def send(self, code, data):
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(*script):
        server = FakeServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def make_vlm(server, **settings):
    overrides = {
        "analyze.vlm": "openai",
        "analyze.openai.base_url": server.url,
        "analyze.openai.model": "qwen-vl-test",
        "analyze.openai.timeout_s": 0.5,
        "analyze.openai.retries": 2,
        "analyze.openai.backoff_s": 0.01,
        "analyze.openai.api_key_env": "AUTOSHOOT_TEST_KEY",
    }
    overrides.update(
        {
            f"analyze.openai.{k}" if k != "repair_retries" else "analyze.repair_retries": v
            for k, v in settings.items()
        }
    )
    return VLMS.create("openai", load_config("tiny", overrides=overrides))


def request(sku="SKU-1"):
    return BriefRequest(image=Image.new("RGB", (640, 480), (120, 80, 40)), sku=sku, title="Tan tote")


def test_good_answer_with_image_schema_and_key(serve, monkeypatch):
    monkeypatch.setenv("AUTOSHOOT_TEST_KEY", "sk-test")
    server = serve(("answer", "```json\n" + GOOD + "\n```"))
    result = make_vlm(server).describe([request()])[0]
    assert result.fallback_fields == [] and result.flags == [] and result.backend == "openai"
    assert result.brief.product.category == "tote"
    body = server.bodies[0]
    assert body["model"] == "qwen-vl-test" and body["temperature"] == 0.0
    assert body["response_format"]["type"] == "json_schema"
    assert "product" in body["response_format"]["json_schema"]["schema"]["properties"]
    image_part, text_part = body["messages"][0]["content"]
    assert image_part["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "title: Tan tote" in text_part["text"] and "x" in text_part["text"]
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_500_errors_are_retried_with_backoff(serve):
    server = serve(("status", 500), ("status", 503), ("answer", GOOD))
    vlm = make_vlm(server)
    result = vlm.describe([request()])[0]
    assert result.flags == [] and len(server.bodies) == 3


def test_timeouts_are_retried(serve):
    server = serve(("sleep", 1.0, ("answer", GOOD)), ("answer", GOOD))
    start = time.perf_counter()
    result = make_vlm(server).describe([request()])[0]
    assert result.flags == [] and len(server.bodies) == 2
    assert time.perf_counter() - start < 3.0


def test_a_body_that_is_not_json_falls_back_to_rules_after_retries(serve):
    server = serve(("raw", b"<html>bad gateway</html>"))
    result = make_vlm(server).describe([request()])[0]
    assert result.fallback_fields == ["*"]
    assert result.flags == ["brief_fallback", "vlm_error"]
    assert "not JSON" in result.raw and "after 3 tries" in result.raw
    assert len(server.bodies) == 3  # 1 + retries
    assert result.brief.product.category == "tote"  # rules read the title


def test_an_invalid_brief_is_asked_again_with_the_errors(serve):
    bad = copy.deepcopy(EXAMPLE_BRIEF)
    bad["shot"] = "panorama"
    server = serve(("answer", json.dumps(bad)), ("answer", GOOD))
    result = make_vlm(server).describe([request()])[0]
    assert result.flags == ["vlm_retry"] and result.fallback_fields == []
    follow_up = server.bodies[1]["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assert "shot: must be one of" in follow_up[2]["content"]


def test_still_invalid_after_the_retry_fills_only_the_bad_field(serve):
    bad = copy.deepcopy(EXAMPLE_BRIEF)
    bad["shot"] = "panorama"
    server = serve(("answer", json.dumps(bad)))
    result = make_vlm(server).describe([request()])[0]
    assert result.fallback_fields == ["shot"]
    assert result.flags == ["brief_fallback", "vlm_retry"]
    assert result.brief.setting == EXAMPLE_BRIEF["setting"]


def test_a_server_without_json_schema_is_asked_without_it(serve):
    server = serve(("reject_schema",))
    result = make_vlm(server).describe([request()])[0]
    assert result.flags == []
    assert "response_format" in server.bodies[0] and "response_format" not in server.bodies[1]


def test_concurrency_is_limited(serve):
    server = serve(("sleep", 0.15, ("answer", GOOD)))
    results = make_vlm(server, concurrency=2).describe([request(f"SKU-{i}") for i in range(5)])
    assert len(results) == 5 and all(r.flags == [] for r in results)
    assert server.max_in_flight == 2
