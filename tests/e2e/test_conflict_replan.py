"""A concurrent write that must change the plan, on a real API server.

A validating admission webhook (HTTPS on 127.0.0.1, registered with the API server) sees the function's
first write of aws-auth and, before the API server stores it, writes aws-auth itself as a person would: it
maps the very user the function is granting, by hand. The API server then answers the function's write
with 409 (its resourceVersion is stale). Re-planned on what it now reads, the function must leave the
person's entry alone and write nothing; a plan reused from before the 409 would add a second entry."""

import base64
import json
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stack import ACCOUNT, FUNCTION_GROUP, cluster_report, map_users

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
HAND = f"- userarn: {ALICE}\n  username: alice-by-hand\n  groups: [viewers]\n"


class RacingWebhook:
    """Admission webhook: on the function's first UPDATE of aws-auth, a person's write lands first."""

    def __init__(self, stack, cluster):
        self.stack, self.cluster = stack, cluster
        self.raced = threading.Event()
        self.seen = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = review["request"]
                user = req["userInfo"]["username"]
                hook.seen.append((user, req["operation"], req.get("name")))
                if (user == FUNCTION_GROUP and req.get("name") == "aws-auth" and req["operation"] == "UPDATE"
                        and not hook.raced.is_set()):
                    hook.raced.set()
                    cm = hook.stack.get_aws_auth(hook.cluster)
                    cm["data"]["mapUsers"] = (cm["data"].get("mapUsers") or "") + HAND
                    code, body = hook.stack.admin("PUT", hook.cluster, hook.stack.CM, cm)
                    assert code == 200, body
                answer = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                          "response": {"uid": req["uid"], "allowed": True}}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(stack.dir, "server.crt"), os.path.join(stack.dir, "server.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def register(self):
        with open(os.path.join(self.stack.dir, "ca.crt"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "racing-writer"},
            "webhooks": [{
                "name": "racing-writer.test.local",
                "clientConfig": {"url": f"https://127.0.0.1:{self.server.server_address[1]}/validate", "caBundle": ca},
                "rules": [{"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"],
                           "resources": ["configmaps"], "scope": "Namespaced"}],
                "sideEffects": "NoneOnDryRun", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }],
        }
        code, body = self.stack.admin("POST", self.cluster,
                                      "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", config)
        assert code == 201, body

    def close(self):
        self.stack.admin("DELETE", self.cluster,
                         "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/racing-writer")
        self.server.shutdown()


def test_a_conflicting_write_that_changes_the_plan_is_replanned(stack):
    stack.create_user("alice", {"eks-cluster-admin": "prod"})
    hook = RacingWebhook(stack, "prod")
    try:
        hook.register()
        rc, report, err = stack.handle_event({"action": "reconcile", "user": "alice"})
    finally:
        hook.close()
    assert hook.raced.is_set(), f"the webhook never saw the function's write: {hook.seen}"
    assert rc == 0, err
    prod = cluster_report(report, "prod")
    # The first write was refused (409), the re-plan found the person's entry: nothing more to write.
    assert prod["attempts"] == 2 and not prod["written"], prod
    assert prod["added"] == [] and prod["skipped"][0]["kind"] == "foreign", prod
    users = map_users(stack.get_aws_auth("prod"))
    assert [u["userarn"] for u in users] == [ALICE], "exactly one entry maps alice: the person's"
    assert users[0]["username"] == "alice-by-hand"
