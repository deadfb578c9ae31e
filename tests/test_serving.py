"""The HTTP perimeter: only the Host names the studio was bound for (no DNS rebinding of a loopback
studio), and no cross-origin request is answered with CORS headers, whatever the Origin."""

from __future__ import annotations

import httpx
import pytest

from app.serving import allowed_hosts
from app.settings import Settings, from_args
from app.testing import running_app

EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def loopback(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("loopback")) as s:
        yield s


def get(srv, path="/config", **headers) -> httpx.Response:
    return httpx.get(srv.url.rstrip("/") + path, headers=headers, timeout=10)


def test_a_loopback_studio_answers_only_loopback_host_names(loopback):
    port = loopback.url.rstrip("/").rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost"):
        assert get(loopback, Host=host).status_code == 200, host
    for host in (f"evil.example:{port}", "rebound.attacker.test", f"192.168.1.20:{port}"):
        r = get(loopback, Host=host)
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers, host
    assert httpx.post(loopback.url + "gradio_api/upload", headers={"Host": "evil.example"},
                      files={"files": ("a.jsonl", b"{}")}, timeout=10).status_code == 400


def test_no_origin_is_ever_echoed(loopback):
    for origin in (EVIL, "null", "http://localhost:9999"):
        r = get(loopback, Origin=origin)
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers, origin
        pre = httpx.options(loopback.url + "gradio_api/queue/join", timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        assert pre.status_code == 400 and "access-control-allow-origin" not in pre.headers, origin


def test_a_studio_on_every_address_with_login_echoes_no_origin(tmp_path):
    with running_app(tmp_path, host="0.0.0.0", auth=(("ann", "pw"),)) as srv:
        r = get(srv, "/login", Host="studio.lan:7860", Origin=EVIL)  # any host name: 0.0.0.0 cannot know its own
        assert r.status_code in (200, 405) and "access-control-allow-origin" not in r.headers
        s = httpx.Client(base_url=srv.url, timeout=10, headers={"Origin": EVIL})
        login = s.post("/login", data={"username": "ann", "password": "pw"})
        assert login.status_code in (200, 302, 303) and "access-control-allow-origin" not in login.headers


def test_allowed_hosts_follow_the_bind_address():
    assert allowed_hosts(Settings()) == ["localhost", "127.0.0.1", "::1"]
    assert allowed_hosts(Settings(host="0.0.0.0")) == ["*"]
    assert allowed_hosts(Settings(host="0.0.0.0", allowed_hosts=("studio.example.org",))) == [
        "localhost", "127.0.0.1", "::1", "studio.example.org"]
    assert allowed_hosts(Settings(host="192.168.1.5"))[0] == "192.168.1.5"
    s = from_args(["--allowed-hosts", "Studio.Example.org, *.lan"], env={}, gpu=False)
    assert s.allowed_hosts == ("studio.example.org", "*.lan")
    assert "studio.example.org" in allowed_hosts(s)
