"""A local OpenAI-compatible chat-completions server for tests (127.0.0.1 only).

Replies are queued: a string becomes the assistant's text, a dict with "tool_calls"
becomes a tool-call message, a dict with "http_status" is an error response with that
status (a provider outage). Every request body is recorded for assertions. A `responder`,
when given, computes each reply from the request body instead (e.g. by looking at the
base64 images a vision request carries).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


class FakeOpenAI:
    def __init__(self, responder: Responder | None = None) -> None:
        self.responder = responder
        self.replies: deque[str | dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                server.requests.append(body)
                if server.responder is not None:
                    reply = server.responder(body)
                else:
                    reply = server.replies.popleft() if server.replies else "{}"
                if isinstance(reply, dict) and "http_status" in reply:
                    error = json.dumps({"error": {"message": "provider down", "type": "server_error"}})
                    self.send_response(int(reply["http_status"]))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error.encode())
                    return
                message: dict[str, Any] = {"role": "assistant", "content": None}
                if isinstance(reply, dict) and "tool_calls" in reply:
                    message["tool_calls"] = [
                        {
                            "id": f"call_{i}",
                            "type": "function",
                            "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                        }
                        for i, c in enumerate(reply["tool_calls"])
                    ]
                    finish = "tool_calls"
                else:
                    message["content"] = reply if isinstance(reply, str) else json.dumps(reply)
                    finish = "stop"
                payload = {
                    "id": "chatcmpl-test",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body.get("model", "test"),
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
