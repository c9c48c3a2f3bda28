"""``autoshoot review RUN``: the report served on this machine, with buttons to decide.

A standard-library ``ThreadingHTTPServer`` bound to 127.0.0.1 by default. It serves

    GET  /                  report.html with the review controls (autoshoot.report.review.page)
    GET  /_review/state     JSON: the reviewer's default name, the reasons, every SKU and its decision
    POST /_review/decide    JSON {sku, decision, candidate, reason, reviewer} → the recorded decision
    GET  /<path>            a file of RUN (the pictures), never outside RUN, never a dot-file

Refused: a request from an address other than the bound one (403; ``allow`` adds addresses),
a Host header that names another host (403, against DNS rebinding), a decision while a run
writes RUN (409), a SKU that is not in the run (404), a candidate it does not have (400).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import mimetypes
import socket
import threading
from collections.abc import Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from autoshoot.report.review.decisions import (
    REASONS,
    DecisionError,
    make_decision,
    read_decisions,
    read_review_index,
    record_decision,
    run_is_writing,
)
from autoshoot.report.review.page import HEAD, SCRIPT
from autoshoot.report.review.runview import SkuView, load_run

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        run_dir: Path,
        host: str = "127.0.0.1",
        port: int = 8765,
        reviewer: str = "",
        allow: Iterable[str] = (),
    ):
        self.run_dir = Path(run_dir).resolve()
        self.reviewer = reviewer
        self._views: tuple[float, dict[str, SkuView]] | None = None
        self._views_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), ReviewHandler)
        self.host = host
        self.allowed = allowed_clients(host, allow)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def views(self) -> dict[str, SkuView]:
        """The run's SKUs, read again when results.csv changes (a later run on RUN)."""
        stamp = (self.run_dir / "results.csv").stat().st_mtime
        with self._views_lock:
            if self._views is None or self._views[0] != stamp:
                self._views = (stamp, load_run(self.run_dir))
            return self._views[1]


def allowed_clients(host: str, allow: Iterable[str]) -> frozenset[str]:
    """The client addresses served: the bound one (both loopbacks for a loopback bind) and
    ``allow``. A wildcard bind (0.0.0.0, ::) serves this machine's loopback and ``allow`` only."""
    extra = {str(ipaddress.ip_address(a)) for a in allow}
    try:
        bound = ipaddress.ip_address(host)
    except ValueError:  # a name such as localhost
        bound = None
    if bound is not None and bound.is_unspecified:
        return frozenset({"127.0.0.1", "::1"} | extra)
    if bound is None or bound.is_loopback:
        base = {"127.0.0.1", "::1"} if bound is None or str(bound) in ("127.0.0.1", "::1") else {str(bound)}
    else:
        base = {str(bound)}
    return frozenset(base | extra)


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "autoshoot-review"

    # -- the gate -------------------------------------------------------------------------

    def _admitted(self) -> bool:
        client = self.client_address[0]
        if client.startswith("::ffff:"):
            client = client[7:]
        allowed = self.server.allowed
        if client not in allowed:
            logger.warning("refused a request from %s (serving %s)", client, ", ".join(sorted(allowed)))
            self._json(
                {
                    "error": f"requests from {client} are not served; this review serves "
                    f"{', '.join(sorted(allowed))} (see --host and --allow)"
                },
                HTTPStatus.FORBIDDEN,
            )
            return False
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host and not self._host_ok(host):
            self._json({"error": f"Host {host!r} is not this review server"}, HTTPStatus.FORBIDDEN)
            return False
        return True

    def _host_ok(self, host: str) -> bool:
        bound = self.server.host.lower()
        try:
            if ipaddress.ip_address(bound).is_unspecified:
                return True
        except ValueError:
            pass
        return host in {bound, "localhost", "127.0.0.1", "::1"} or host == str(self.server.server_address[0])

    # -- routes ---------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if not self._admitted():
            return
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        try:
            if path in ("/", "/index.html", "/report.html"):
                self._page()
            elif path == "/_review/state":
                self._json(self._state())
            else:
                self._file(path)
        except (ConnectionError, BrokenPipeError):
            pass

    def do_POST(self) -> None:  # noqa: N802
        if not self._admitted():
            return
        if self.path != "/_review/decide":
            self._json({"error": f"no such action: {self.path}"}, HTTPStatus.NOT_FOUND)
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
            self._json({"error": "send the decision as application/json"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ValueError("too large")
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError as err:
            self._json({"error": f"the request is not a JSON object ({err})"}, HTTPStatus.BAD_REQUEST)
            return
        status, payload = self._decide(body)
        self._json(payload, status)

    def _decide(self, body: dict[str, Any]) -> tuple[HTTPStatus, dict[str, Any]]:
        run_dir = self.server.run_dir
        holder = run_is_writing(run_dir)
        if holder:
            return HTTPStatus.CONFLICT, {
                "error": f"a run is writing {run_dir.name} ({holder}); decide again when it has finished"
            }
        sku = str(body.get("sku") or "")
        view = self.server.views().get(sku)
        if view is None:
            return HTTPStatus.NOT_FOUND, {
                "error": f"SKU {sku!r} is not in this run ({run_dir.name}/results.csv); reload the page"
            }
        kind = str(body.get("decision") or "")
        candidate = body.get("candidate")
        try:
            candidate = None if candidate in (None, "") else int(candidate)
        except (TypeError, ValueError):
            return HTTPStatus.BAD_REQUEST, {"error": f"candidate {candidate!r} is not a number"}
        if kind != "rejected":
            if candidate not in view.candidates:
                have = ", ".join(map(str, view.candidates)) or "none"
                return HTTPStatus.BAD_REQUEST, {
                    "error": f"SKU {sku!r} has no candidate {candidate} (it has: {have})"
                }
            kind = "approved" if candidate == view.best_index else "picked"
        try:
            decision = make_decision(
                sku,
                kind,
                candidate,
                str(body.get("reason") or ""),
                str(body.get("reviewer") or self.server.reviewer),
                view.photo_sha256,
            )
        except DecisionError as err:
            return HTTPStatus.BAD_REQUEST, {"error": str(err)}
        record_decision(run_dir, decision)
        logger.info("%s: %s by %s", sku, decision.decision, decision.reviewer)
        return HTTPStatus.OK, {"decision": decision.row() | {"candidate": decision.candidate}}

    def _state(self) -> dict[str, Any]:
        decisions = read_decisions(self.server.run_dir)
        index = read_review_index(self.server.run_dir)
        skus = {}
        for sku, view in self.server.views().items():
            decision = decisions.get(sku)
            skus[sku] = view.to_json() | {
                "decision": decision.row() | {"candidate": decision.candidate} if decision else None,
                "previous": previous_note(index.get(sku, {})),
            }
        return {"reviewer": self.server.reviewer, "reasons": list(REASONS), "skus": skus}

    def _page(self) -> None:
        try:
            page = (self.server.run_dir / "report.html").read_text(encoding="utf-8")
        except OSError:
            self._json({"error": "this run has no report.html yet"}, HTTPStatus.NOT_FOUND)
            return
        page = page.replace("</head>", HEAD + "</head>", 1)
        head, sep, tail = page.rpartition("</body>")
        page = head + SCRIPT + sep + tail if sep else page + SCRIPT
        self._send(page.encode("utf-8"), "text/html; charset=utf-8")

    def _file(self, path: str) -> None:
        from urllib.parse import unquote

        rel = unquote(path).lstrip("/")
        target = (self.server.run_dir / rel).resolve()
        parts = Path(rel).parts
        if (
            not rel
            or any(p.startswith(".") for p in parts)
            or not target.is_relative_to(self.server.run_dir)
            or not target.is_file()
        ):
            self._json({"error": f"no such file in the run: {rel}"}, HTTPStatus.NOT_FOUND)
            return
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self._send(target.read_bytes(), kind)

    # -- replies --------------------------------------------------------------------------

    def _send(self, data: bytes, kind: str, status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, data: dict[str, Any], status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(data).encode("utf-8"), "application/json", status)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        logger.debug("%s %s", self.client_address[0], format % args)


def previous_note(data: dict[str, Any]) -> str:
    """What the run did because of an earlier decision, in words ("" when nothing)."""
    decision = data.get("decision") or {}
    if data.get("action") == "rerender":
        return (
            f"rejected before in {data.get('source')}: {decision.get('reason')} "
            f"({decision.get('reviewer')}); re-rendered with a new seed"
        )
    if data.get("action") == "frozen":
        return (
            f"approved before in {data.get('source')} ({decision.get('reviewer')}); frozen, not re-rendered"
        )
    return ""


def serve(
    run_dir: Path, host: str = "127.0.0.1", port: int = 8765, reviewer: str = "", allow: Iterable[str] = ()
) -> ReviewServer:
    """A started server (its own thread); call ``shutdown()`` and ``server_close()`` to stop it."""
    server = ReviewServer(run_dir, host, port, reviewer, allow)
    threading.Thread(target=server.serve_forever, name="autoshoot-review", daemon=True).start()
    return server
