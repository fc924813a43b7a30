"""A small OpenAI-compatible chat endpoint whose answers a test scripts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
    }


class FakeLLM:
    """Answers POST /v1/chat/completions from `script` (status, body) items, then `default`."""

    def __init__(self, default_content: str):
        self.default = (200, completion(default_content))
        self.script: list[tuple[int, dict]] = []
        self.requests: list[dict] = []
        self.delay_seconds = 0.0  # before each answer: a slow endpoint
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                fake.requests.append(json.loads(self.rfile.read(length)))
                time.sleep(fake.delay_seconds)
                status, body = fake.script.pop(0) if fake.script else fake.default
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("retry-after-ms", "10")
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: what a slow endpoint sees

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, content: str, status: int = 200) -> None:
        self.script.append((status, completion(content)))

    def fail(self, status: int, message: str) -> None:
        self.script.append((status, {"error": {"message": message, "type": "test"}}))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
