"""6. The function's own identity gets only what infra/rbac.yaml grants. 7. Two clusters, one tag."""

import time

from stack import ACCOUNT


def test_function_identity_is_least_privileged(stack):
    token = stack.token_for("prod", stack.function_creds)
    ok, _ = stack.request("GET", "prod", stack.CM, token)
    assert ok == 200
    cases = [
        ("GET", "/api/v1/namespaces/kube-system/secrets"),
        ("GET", "/api/v1/namespaces/kube-system/configmaps"),
        ("GET", "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt"),
        ("GET", "/api/v1/namespaces/default/configmaps/aws-auth"),
        ("DELETE", stack.CM),
        ("GET", "/api/v1/nodes"),
    ]
    for method, path in cases:
        code, body = stack.request(method, "prod", path, token)
        assert code == 403, (method, path, code, body)
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
             "data": {"x": "y"}}
    code, _ = stack.admin("POST", "prod", "/api/v1/namespaces/kube-system/configmaps", other)
    assert code == 201
    code, body = stack.request("PUT", "prod", "/api/v1/namespaces/kube-system/configmaps/coredns", token, other)
    assert code == 403, body
    code, body = stack.request("PATCH", "prod", "/api/v1/namespaces/kube-system/configmaps/coredns", token,
                               {"data": {"x": "z"}}, "application/merge-patch+json")
    assert code == 403, body
    stack.admin("DELETE", "prod", "/api/v1/namespaces/kube-system/configmaps/coredns")


def test_a_tag_naming_one_cluster(stack):
    arn = f"arn:aws:iam::{ACCOUNT}:user/dana"
    creds = stack.create_user("dana", {"eks-cluster-admin": "staging"})
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "dana"})
    assert rc == 0, err
    by = {c["cluster"]: c for c in report["clusters"]}
    assert by["staging"]["added"] == [arn] and by["prod"]["added"] == []
    assert stack.kubectl_as("staging", creds, ["get", "ns"]).returncode == 0
    assert stack.kubectl_as("prod", creds, ["get", "ns"]).returncode != 0

    stack.iam().tag_user(UserName="dana", Tags=[{"Key": "eks-cluster-admin", "Value": "prod"}])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "dana"})
    assert rc == 0, err
    by = {c["cluster"]: c for c in report["clusters"]}
    assert by["staging"]["removed"] == [arn] and by["prod"]["added"] == [arn]
    assert stack.kubectl_as("prod", creds, ["get", "ns"]).returncode == 0
    assert stack.kubectl_as("staging", creds, ["get", "ns"]).returncode != 0

    # A value naming an unmanaged cluster is ignored with a note, not an error.
    stack.iam().tag_user(UserName="dana", Tags=[{"Key": "eks-cluster-admin", "Value": "prod,staging"}])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "dana"})
    assert rc == 0, err
    assert any("prod,staging" in n for n in report["notes"]), report
    assert {c["cluster"]: c["removed"] for c in report["clusters"]} == {"prod": [arn], "staging": []}
