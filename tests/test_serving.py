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
        # a cross-site POST (login CSRF) is refused outright now, and still echoes no origin
        assert login.status_code == 403 and "access-control-allow-origin" not in login.headers


def test_allowed_hosts_follow_the_bind_address():
    assert allowed_hosts(Settings()) == ["localhost", "127.0.0.1", "::1"]
    assert allowed_hosts(Settings(host="0.0.0.0")) == ["*"]
    assert allowed_hosts(Settings(host="0.0.0.0", allowed_hosts=("studio.example.org",))) == [
        "localhost", "127.0.0.1", "::1", "studio.example.org"]
    assert allowed_hosts(Settings(host="192.168.1.5"))[0] == "192.168.1.5"
    s = from_args(["--allowed-hosts", "Studio.Example.org, *.lan"], env={}, gpu=False)
    assert s.allowed_hosts == ("studio.example.org", "*.lan")
    assert "studio.example.org" in allowed_hosts(s)


def test_downloads_use_a_private_folder_that_no_planted_link_redirects(loopback):
    """The old predictable /tmp/ptmoe-studio-downloads followed a planted link (overwriting its target)
    and its cleanup deleted other studios' zips; each studio now writes in its own 0700 folder."""
    import os
    import tempfile
    import time
    from pathlib import Path

    from gradio_client import Client

    st = loopback.ctx.storage
    run_id = st.submit({"name": "dl", "model": {"name": "tiny-random", "device": "cpu"},
                        "data": {"train": ["jsonl:/nonexistent/none.jsonl"]}, "train": {"steps": 1, "warmup_steps": 0}})
    deadline = time.monotonic() + 120
    while not st.get_run(run_id).is_final and time.monotonic() < deadline:
        time.sleep(0.2)  # the job fails at once (no such file), or is still queued
    adapter = Path(st.get_run(run_id).output_dir) / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    st.set_adapter(run_id, adapter)

    shared = Path(tempfile.gettempdir()) / "ptmoe-studio-downloads"
    shared.mkdir(exist_ok=True)
    victim = Path(tempfile.mkdtemp()) / "victim.txt"
    victim.write_text("precious")
    planted = shared / f"run{run_id}-dl-adapter.zip"
    other = shared / "another-studios-download.zip"
    try:
        planted.unlink(missing_ok=True)
        planted.symlink_to(victim)
        other.write_text("theirs")
        hours_ago = time.time() - 7200
        os.utime(other, (hours_ago, hours_ago))
        f, msg = Client(loopback.url, verbose=False).predict(run_id, api_name="/download_adapter")
        assert "ready" in msg
        assert victim.read_text() == "precious", "a planted link redirected the download"
        assert other.read_text() == "theirs", "another studio's file was cleaned up"
        scratch = loopback.ctx.studio.scratch
        assert scratch.stat().st_mode & 0o777 == 0o700 and scratch.parent == Path(tempfile.gettempdir())
        assert list(scratch.rglob("*.zip")), "the zip is built in the studio's own folder"
    finally:
        planted.unlink(missing_ok=True)
        other.unlink(missing_ok=True)
