"""1. The seed scenario, with the binary running in Lambda mode against a local Lambda Runtime API."""

import json
import os
import subprocess
import time

from lambda_runtime_api import RuntimeApi, lambda_env
from stack import ACCOUNT, BINARY, REPO, map_users, no_ids, owned, ours

ARN = f"arn:aws:iam::{ACCOUNT}:user/new-admin-test"


def load(name):
    with open(os.path.join(REPO, "events", name)) as f:
        return json.load(f)


def refused(p):
    return p.returncode != 0 and ("Unauthorized" in p.stderr or "provide credentials" in p.stderr)


def test_tag_grants_admin_untag_revokes_in_lambda_mode(stack, tmp_path):
    creds = stack.create_user("new-admin-test")
    assert refused(stack.kubectl_as("prod", creds, ["get", "all", "-A"])), "not an admin before tagging"

    rt = RuntimeApi()
    out = open(tmp_path / "function.log", "w+")
    proc = subprocess.Popen([BINARY], env=stack.function_env(lambda_env(rt.address)), stdout=out, stderr=subprocess.STDOUT)
    try:
        stack.iam().tag_user(UserName="new-admin-test", Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
        kind, result = rt.invoke(load("tag-user.json"))
        assert kind == "response", result
        assert [c["cluster"] for c in result["clusters"]] == ["prod", "staging"]
        for c in result["clusters"]:
            assert c["added"] == [ARN] and c["written"], c
        for cluster in ("prod", "staging"):
            cm = stack.get_aws_auth(cluster)
            assert no_ids(map_users(cm)) == [ours(ARN, "new-admin-test")]
            assert owned(cm) == [ARN]

        # The new admin, signing with its own key, sees everything in every namespace.
        p = stack.kubectl_as("prod", creds, ["get", "all", "-A"])
        assert p.returncode == 0, p.stderr
        assert "service/kubernetes" in p.stdout
        p = stack.kubectl_as("prod", creds, ["auth", "can-i", "*", "*", "--all-namespaces"])
        assert p.stdout.strip() == "yes", p.stdout + p.stderr

        # A warm invocation of the same event: nothing to change, and only 1 IAM read, no DescribeCluster.
        stack.reset_calls()
        seen = {c: len(stack.function_requests(c)) for c in ("prod", "staging")}
        kind, result = rt.invoke(load("tag-user.json"))
        assert kind == "response", result
        assert all(c["unchanged"] == 1 and not c["written"] for c in result["clusters"])
        calls = stack.calls()
        assert calls.get("iam:GetUser") == 1, calls
        # A cluster last seen in CONFIG_MAP is described for every event: another run may have moved it on
        # to access entries, where a revocation must look too (one DescribeCluster per such cluster).
        assert calls.get("eks:DescribeCluster") == 2, calls
        assert not any(k.startswith("sts:") for k in calls), f"tokens are signed locally: {calls}"
        for c in ("prod", "staging"):
            reqs = stack.function_requests(c)[seen[c]:]
            assert [(v, r, n) for v, r, n, _ in reqs] == [("get", "configmaps", "aws-auth")], reqs

        stack.iam().untag_user(UserName="new-admin-test", TagKeys=["eks-cluster-admin"])
        kind, result = rt.invoke(load("untag-user.json"))
        assert kind == "response", result
        assert all(c["removed"] == [ARN] for c in result["clusters"]), result
        assert map_users(stack.get_aws_auth("prod")) == []
        # The revocation happened in the function: the next kubectl signs its token after it.
        stack.ran()
        assert refused(stack.kubectl_as("prod", creds, ["get", "all", "-A"])), "access must be gone after untag"

        # A malformed event is an invocation error, not a silent success.
        kind, result = rt.invoke({"hello": "world"})
        assert kind == "error" and "unrecognised event" in json.dumps(result), result
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        rt.close()
    out.seek(0)
    logs = out.read()
    assert "k8s-aws-v1." not in logs, "the bearer token must never be logged"
    assert stack.function_creds["AWS_SECRET_ACCESS_KEY"] not in logs
    assert stack.function_creds["AWS_SESSION_TOKEN"] not in logs
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), "Lambda logs are JSON lines"
    assert any(json.loads(line).get("fields", {}).get("message") == "cluster reconciled" for line in lines)


def test_plan_and_dry_run_write_nothing(stack):
    stack.create_user("carol", {"eks-cluster-admin": "prod"})
    before = stack.get_aws_auth("prod")
    p = stack.run(["plan"])
    assert p.returncode == 0, p.stderr
    assert "cluster prod (aws-auth): 1 to add" in p.stdout and f"arn:aws:iam::{ACCOUNT}:user/carol" in p.stdout
    assert "cluster staging (aws-auth): 0 to add" in p.stdout
    rc, report, _ = stack.handle_event("manual-user-dry-run.json")
    assert rc == 0 and report["dryRun"]
    p = stack.run(["reconcile", "--dry-run"])
    assert p.returncode == 0 and json.loads(p.stdout)["clusters"][0]["added"], p.stdout
    after = stack.get_aws_auth("prod")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    p = stack.run(["reconcile", "--user", "carol"])
    assert p.returncode == 0 and json.loads(p.stdout)["clusters"][0]["written"]
