"""``openai``: any OpenAI-compatible chat endpoint (vLLM or SGLang serving Qwen-VL, a cloud API).

Images go as base64 data URLs, resized first as Qwen's processor would (so that ``pixels``
coordinates refer to a known size). JSON-schema guided decoding is asked for through
``response_format`` when ``analyze.openai.json_schema`` is on; a server that refuses it
(HTTP 400) is asked again without it. Each HTTP request has a timeout and is retried with
exponential backoff on timeouts, connection errors, 429 and 5xx; at most
``analyze.openai.concurrency`` requests are in flight.

Only the standard library is used for HTTP.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from autoshoot.brief import BriefRequest, BriefResult, brief_json_schema, open_rgb
from autoshoot.brief.parse import Pending, describe_with_repair
from autoshoot.brief.prompt import render_vlm_instruction

logger = logging.getLogger(__name__)

RETRY_STATUS = (408, 409, 425, 429, 500, 502, 503, 504)


class EndpointError(RuntimeError):
    """The endpoint did not give a usable answer after all retries; the message says why."""


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 1003520
) -> tuple[int, int]:
    """Qwen's resize rule: both sides multiples of ``factor``, area within [min, max] pixels.
    (Same arithmetic as qwen_vl_utils.smart_resize, without importing torch.)"""
    import math

    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_data_url(image: Any, quality: int = 92) -> str:
    """An RGB PIL image → ``data:image/jpeg;base64,...``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class OpenAIVLM:
    """The ``openai`` backend: ``describe(requests)`` over an OpenAI-compatible ``/chat/completions``."""

    name = "openai"

    def __init__(self, config: Any):
        self.config = config
        self.settings = config.analyze
        self.endpoint = config.analyze.openai
        self.url = self.endpoint.base_url.rstrip("/") + "/chat/completions"
        self.api_key = os.environ.get(self.endpoint.api_key_env, "") if self.endpoint.api_key_env else ""
        self.use_schema = bool(self.endpoint.json_schema)
        self.requests_sent = 0  # for logs and tests

    def describe(self, requests: list[BriefRequest]) -> list[BriefResult]:
        pending = [self.prepare_request(r) for r in requests]
        return describe_with_repair(
            pending,
            self.ask,
            convention=self.endpoint.coords,
            backend=self.name,
            repair_retries=self.settings.repair_retries,
        )

    def prepare_request(self, request: BriefRequest) -> Pending:
        image = open_rgb(request.image)
        width, height = image.size
        new_h, new_w = smart_resize(height, width, 28, self.settings.min_pixels, self.settings.max_pixels)
        seen = image.resize((new_w, new_h)) if (new_w, new_h) != (width, height) else image
        fields = request.catalog_fields()
        instruction = render_vlm_instruction(
            fields, (new_w, new_h), coords=self.endpoint.coords, seed=int(request.seed or 0)
        )
        return Pending(request=request, image=seen, input_size=(width, height), instruction=instruction)

    def build_messages(self, item: Pending) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(item.image)}},
                    {"type": "text", "text": item.instruction},
                ],
            }
        ]
        for role, text in item.history:
            messages.append({"role": role, "content": text})
        return messages

    def ask(self, items: list[Pending]) -> list[str | BaseException]:
        """Send every item concurrently (at most ``concurrency`` at once), in order."""
        workers = max(1, min(self.endpoint.concurrency, len(items)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self._ask_one, item) for item in items]
            out: list[str | BaseException] = []
            for future in futures:
                try:
                    out.append(future.result())
                except Exception as err:  # returned per item; the loop falls back to rules
                    out.append(err)
        return out

    def _ask_one(self, item: Pending) -> str:
        body: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": self.build_messages(item),
            "max_tokens": self.settings.max_new_tokens,
            "temperature": 0.0,
        }
        if self.use_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "brief", "schema": brief_json_schema()},
            }
        try:
            data = self.post(body)
        except EndpointError as err:
            if self.use_schema and "HTTP 400" in str(err):
                logger.warning(
                    "%s refused response_format json_schema; asking without it from now on", self.url
                )
                self.use_schema = False
                body.pop("response_format", None)
                data = self.post(body)
            else:
                raise
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"{self.url} answered without choices[0].message.content: {str(data)[:200]}"
            ) from None
        if isinstance(content, list):  # content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content or "")

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with timeout and retries; returns the decoded response body."""
        payload = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempts = 1 + max(0, self.endpoint.retries)
        delay = self.endpoint.backoff_s
        last = ""
        for attempt in range(attempts):
            self.requests_sent += 1
            request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.endpoint.timeout_s) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except json.JSONDecodeError:
                    last = f"the response is not JSON: {raw[:120]!r}"
            except urllib.error.HTTPError as err:
                detail = err.read()[:200].decode("utf-8", "replace")
                if err.code not in RETRY_STATUS:
                    raise EndpointError(f"{self.url}: HTTP {err.code}: {detail}") from None
                last = f"HTTP {err.code}: {detail}"
            except TimeoutError as err:
                last = f"timed out after {self.endpoint.timeout_s:g} s ({err})"
            except urllib.error.URLError as err:
                if isinstance(err.reason, (TimeoutError, socket.timeout)):
                    last = f"timed out after {self.endpoint.timeout_s:g} s"
                else:
                    last = f"cannot connect: {err.reason}"
            except (ConnectionError, OSError) as err:
                last = f"connection failed: {err}"
            if attempt + 1 < attempts:
                logger.info("%s: %s; retry %d/%d in %.1f s", self.url, last, attempt + 1, attempts - 1, delay)
                time.sleep(delay)
                delay *= 2
        raise EndpointError(
            f"{self.url}: {last} (after {attempts} tries); check analyze.openai.base_url and that the server runs"
        )

    def close(self) -> None:
        pass
