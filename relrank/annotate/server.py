"""The annotation page and its JSON API (Flask), over a Session.

    GET  /                      the page (keyboard and mouse)
    POST /api/next              {"attr"[, "page"]} -> {"attr": A, "a": name, "b": name}: the next pair, now on offer
                                ({"attr": A, "done": true}: none left); GET changes nothing, so it is refused
    POST /api/answer            {"attr", "a", "b", "label": "more"|"less"|"equal"[, "annotator", "page"]}
                                -> {"ok": true} once on disk (label: how a compares with b)
    POST /api/skip              {"attr", "a", "b"[, "page"]}: not answered; the pair is withdrawn
    POST /api/undo              {["annotator", "page"]} -> {"ok": true, "undone": {...}}: the latest answer that
                                annotator gave from that page retracted
    POST /api/leave             {"page"}: the page went away; its offers are released
    GET  /api/status            answers per attribute, pairs per minute, the ranker's validation accuracy
    GET  /images/<name>         an image of the folder (only those: names are looked up, never joined to paths)

With a token every request carries it (`?token=` or the header X-Relrank-Token); without, 403.
`page` names a browser tab (the page makes one per tab): offers and undo belong to it; API clients may leave
it out. Refused requests get status 400 and {"ok": false, "error": why}; an answer that could not be saved 503;
every error is JSON, never an HTML page. Request bodies are capped at MAX_BODY bytes.
"""

from __future__ import annotations

import hmac
import json
from importlib import resources

from flask import Flask, abort, jsonify, request, send_file
from markupsafe import escape

from relrank.annotate.answers import AnswerNotSaved
from relrank.annotate.session import AnswerRefused, Session

TOKEN_HEADER = "X-Relrank-Token"
MAX_BODY = 16 * 1024  # bytes: an answer is a few hundred


def create_app(session: Session, token: str = "", annotator: str = "") -> Flask:
    app = Flask("relrank.annotate")
    app.json.sort_keys = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    page = resources.files("relrank.annotate").joinpath("page.html").read_text()

    @app.before_request
    def check_token():
        if token:
            given = request.args.get("token") or request.headers.get(TOKEN_HEADER) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return jsonify(ok=False, error="missing or wrong token (open the URL the server printed)"), 403
        return None

    @app.errorhandler(AnswerRefused)
    def refused(error):
        return jsonify(ok=False, error=str(error)), 400

    @app.errorhandler(AnswerNotSaved)
    def not_saved(error):
        return jsonify(ok=False, error=str(error)), 503

    @app.errorhandler(413)
    def too_large(error):
        return jsonify(ok=False, error=f"the request body is larger than {MAX_BODY} bytes"), 413

    @app.errorhandler(500)
    def failed(error):  # the traceback goes to the terminal (Flask logs it); the page gets one line
        cause = getattr(error, "original_exception", None) or error
        return jsonify(ok=False, error=f"the server failed: {type(cause).__name__}: {cause}"), 500

    @app.errorhandler(404)
    def not_found(error):
        return jsonify(ok=False, error=f"no such page or image: {request.path}"), 404

    @app.errorhandler(405)
    def wrong_method(error):
        hint = " (taking a pair changes the session: POST {\"attr\": ...})" if request.path == "/api/next" else ""
        return jsonify(ok=False, error=f"{request.method} is not allowed on {request.path}{hint}"), 405

    def body(*fields: str) -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise AnswerRefused("the request body is not a JSON object")
        for field in fields:
            if not isinstance(data.get(field), str):
                raise AnswerRefused(f"the JSON object has no string field {field!r}")
        return data

    def who(data: dict) -> str:
        name = data.get("annotator") or annotator
        if not isinstance(name, str) or len(name) > 100:
            raise AnswerRefused("annotator must be a string of at most 100 characters")
        return name

    def page_of(data: dict) -> str:
        page = data.get("page", "")
        if not isinstance(page, str) or len(page) > 100:
            raise AnswerRefused("page must be a string of at most 100 characters")
        return page

    @app.get("/")
    def index():
        settings = dict(attributes=session.attributes, token=token)
        # In a data attribute, escaped: names of attributes cannot break out of it.
        return page.replace("{{settings}}", str(escape(json.dumps(settings))))

    @app.post("/api/next")
    def next_pair():
        data = body() if request.data else {}
        attr = data.get("attr") or session.attributes[0]
        if not isinstance(attr, str):
            raise AnswerRefused("attr must be a string")
        return jsonify(session.next_pair(attr, page_of(data)))

    @app.post("/api/answer")
    def answer():
        data = body("attr", "a", "b", "label")
        session.answer(data["attr"], data["a"], data["b"], data["label"], who(data), page_of(data))
        return jsonify(ok=True)

    @app.post("/api/skip")
    def skip():
        data = body("attr", "a", "b")
        session.skip(data["attr"], data["a"], data["b"], page_of(data))
        return jsonify(ok=True)

    @app.post("/api/leave")
    def leave():
        session.leave(page_of(body("page")))
        return jsonify(ok=True)

    @app.post("/api/undo")
    def undo():
        data = body() if request.data else {}
        undone = session.undo(who(data), page_of(data))
        if undone is None:
            return jsonify(ok=False, error="nothing to undo" + (" from this page" if data.get("page") else "")), 400
        return jsonify(ok=True, undone=undone)

    @app.get("/api/status")
    def status():
        return jsonify(session.status())

    @app.get("/images/<path:name>")
    def image(name: str):
        path = session.image_file(name)
        if path is None:
            abort(404)
        try:
            return send_file(path, max_age=3600)
        except OSError:  # deleted between the check and the read
            abort(404)

    return app
