"""A minimal AWS Lambda Runtime API (2018-06-01) for running the real binary in Lambda mode locally.

The function process polls GET /runtime/invocation/next; `invoke(event)` queues an event and waits for the
function's POST .../response or .../error. Also records the time of each poll (used by the init benchmark).
"""

import json
import queue
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BASE = "/2018-06-01/runtime"


class RuntimeApi:
    def __init__(self):
        self.events = queue.Queue()
        self.results = {}
        self.done = threading.Condition()
        self.polls = []
        self.init_error = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, code, body=b"", headers=None):
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the function process went away (end of a test)

            def do_GET(self):
                if self.path != f"{BASE}/invocation/next":
                    return self._reply(404)
                api.polls.append(time.monotonic())
                request_id, event = api.events.get()
                if request_id is None:  # shutdown
                    return self._reply(500, b'{"errorMessage":"shutting down"}')
                body = json.dumps(event).encode()
                self._reply(200, body, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(int((time.time() + 300) * 1000)),
                    "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:eks-admin-sync",
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                })

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = self.path[len(BASE):].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = body
                    self._reply(202, b"{}")
                    with api.done:
                        api.done.notify_all()
                    return
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with api.done:
                        api.results[parts[1]] = (parts[2], json.loads(body or b"null"))
                        api.done.notify_all()
                    return self._reply(202, b"{}")
                self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event, timeout=60):
        """Returns ("response", payload) or ("error", error document)."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        deadline = time.time() + timeout
        with self.done:
            while request_id not in self.results:
                if self.init_error is not None:
                    return "init-error", json.loads(self.init_error)
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError("the function did not answer")
                self.done.wait(left)
            return self.results.pop(request_id)

    def close(self):
        self.events.put((None, None))
        self.server.shutdown()
        self.server.server_close()


def lambda_env(address):
    return {
        "AWS_LAMBDA_RUNTIME_API": address,
        "AWS_LAMBDA_FUNCTION_NAME": "eks-admin-sync",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/eks-admin-sync",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
    }
