"""Server start-up: a port taken before the server binds it is retried on another port."""

import sys
import textwrap

from loadtests.servers import running_server

# Fails like uvicorn the first time (port taken), then serves /health.
SERVER = textwrap.dedent("""
    import http.server, pathlib, sys
    marker = pathlib.Path(sys.argv[2])
    if not marker.exists():
        marker.write_text("tried")
        print("ERROR: [Errno 98] error while attempting to bind on address: address already in use", flush=True)
        sys.exit(3)
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
""")


def test_a_server_whose_port_was_taken_starts_again_elsewhere(tmp_path):
    marker = tmp_path / "first-try"
    command = lambda port: [sys.executable, "-c", SERVER, str(port), str(marker)]  # noqa: E731
    with running_server("fake", command, log_dir=tmp_path, timeout_seconds=30) as server:
        first_log = next(p for p in tmp_path.glob("fake-*.log") if p != server.log_path)
        assert "address already in use" in first_log.read_text()
        assert server.process.poll() is None
    assert marker.read_text() == "tried"
