"""Revocation that holds for every source (issue 23), end to end on the local stack. One test per way a
removal used to be refused by mistake, a stale row reused, or an event mishandled; each failed on the code
before the issue and passes after (see the closing note of the issue).

Every grant now records the source that made it (`eks-admin-sync-source` on the aws-auth row and on the access
entry), and the removal guard judges each removal by it.
"""

import datetime as dt
import json
import os
import subprocess
import time

from lambda_runtime_api import RuntimeApi, lambda_env
from stack import (ACCOUNT, BINARY, NODE_ROLE, REPO, audit_records, cluster_report, ct_event, force_payload,
                   map_users)

TAG = "eks-cluster-admin"
EXPIRES = "eks-cluster-admin-expires"
CLUSTERS = ("prod", "staging")


def user_arn(name):
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def member_arn(name):
    """An admin group's member, under the path the policies protect (ADMIN_GROUP_MEMBER_PATH)."""
    return f"arn:aws:iam::{ACCOUNT}:user/eks-admins/{name}"


def can_admin(stack, cluster, creds):
    return stack.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def at(seconds):
    t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def map_roles(cm):
    import yaml
    return yaml.safe_load((cm.get("data") or {}).get("mapRoles") or "[]") or []


def our_roles(stack, cluster):
    return [r["rolearn"] for r in map_roles(stack.get_aws_auth(cluster)) if r.get("eks-admin-sync") == "default"]


def untagged_everyone_guarded(stack, names):
    """Every one of `names` granted, then untagged: nobody carries the tag, and the full reconcile is guarded."""
    for n in names:
        stack.create_user(n, {TAG: "true"})
    rc, _, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    for n in names:
        stack.iam().untag_user(UserName=n, TagKeys=[TAG])
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc != 0 and cluster_report(report, "prod")["guard"]["rule"] == "no-tagged-principals", err


def test_1_a_deployment_granting_through_groups_only_revokes_a_member_whose_event_was_lost(stack):
    env = {"ADMIN_IAM_GROUPS": "platform"}
    iam = stack.iam()
    iam.create_group(GroupName="platform")
    people = {n: stack.create_user(n, path="/eks-admins/") for n in ("alice", "bob")}
    for n in people:
        iam.add_user_to_group(GroupName="platform", UserName=n)
    rc, report, err = stack.run_reconcile(extra=env)
    assert rc == 0, err
    assert {r["source"] for r in audit_records(err)} == {"iam-group:platform"}
    # Nobody carries the tag in this deployment. Bob leaves the group; the RemoveUserFromGroup event is lost.
    iam.remove_user_from_group(GroupName="platform", UserName="bob")
    rc, report, err = stack.handle_event("scheduled.json", env)
    assert rc == 0, err
    for c in CLUSTERS:
        r = cluster_report(report, c)
        assert r["status"] == "ok" and r["removed"] == [member_arn("bob")], r
    assert not can_admin(stack, "prod", people["bob"])
    assert can_admin(stack, "prod", people["alice"])
    [revoke] = [r for r in audit_records(err) if r["cluster"] == "prod"]
    assert revoke["action"] == "revoke" and revoke["source"] == "iam-group:platform", revoke


def test_2_an_empty_break_glass_group_holds_back_no_expiry(stack):
    env = {"ADMIN_IAM_GROUPS": "platform break-glass"}
    iam = stack.iam()
    iam.create_group(GroupName="platform")
    iam.create_group(GroupName="break-glass")  # empty on purpose
    stack.create_user("carol", path="/eks-admins/")
    iam.add_user_to_group(GroupName="platform", UserName="carol")
    until = at(4)
    alice = stack.create_user("alice", {TAG: "true", EXPIRES: until})
    rc, report, err = stack.run_reconcile(extra=env)
    assert rc == 0, err
    assert can_admin(stack, "prod", alice)
    time.sleep(max(0.0, dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp() - time.time()) + 1)
    # What the expiry wake-up sends.
    rc, report, err = stack.handle_event({"action": "reconcile", "reason": "expiry"}, env)
    assert rc == 0, err
    for c in CLUSTERS:
        r = cluster_report(report, c)
        assert r["status"] == "ok" and r["removed"] == [user_arn("alice")], r
    assert {r["action"] for r in audit_records(err)} == {"expire"}
    assert not can_admin(stack, "prod", alice)


def test_3_a_deleted_permission_set_role_is_revoked_so_a_role_of_its_name_is_nobody(stack):
    env = {"ADMIN_PERMISSION_SETS": "Admin"}
    name = "AWSReservedSSO_Admin_0123456789abcdef"
    stack.sso_role("Admin", "0123456789abcdef")
    stack.create_user("keeper", {TAG: "true"})
    rc, report, err = stack.run_reconcile(extra=env)
    assert rc == 0, err
    bare = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    assert our_roles(stack, "prod") == [bare]
    # Every assignment is removed: Identity Center deletes the role. The DeleteRole event is lost.
    stack.delete_sso_role(name)
    rc, report, err = stack.handle_event("scheduled.json", env)
    assert rc == 0, err
    for c in CLUSTERS:
        assert cluster_report(report, c)["removed"] == [bare], report
        assert our_roles(stack, c) == []
    # EKS matches an assumed-role session by role name: a role made later under that name, at any path, would
    # have been cluster admin through a row that outlived its role.
    squatter = stack.create_role(name, path="/squat/")
    assert not can_admin(stack, "prod", stack.assume(squatter, "mallory"))


def test_4_a_case_typo_in_the_permission_set_names_is_guarded(stack):
    name = "AWSReservedSSO_Admin_0123456789abcdef"
    role = stack.sso_role("Admin", "0123456789abcdef")
    stack.create_user("keeper", {TAG: "true"})
    rc, report, err = stack.run_reconcile(extra={"ADMIN_PERMISSION_SETS": "Admin"})
    assert rc == 0, err
    session = stack.assume(role, "jane@example.com")
    assert can_admin(stack, "prod", session)
    # The grant reads the names exactly; so does the guard now.
    rc, report, err = stack.handle_event("scheduled.json", {"ADMIN_PERMISSION_SETS": "admin"})
    assert rc != 0
    for c in CLUSTERS:
        r = cluster_report(report, c)
        assert r["status"] == "guarded" and r["guard"]["rule"] == "source-yields-nobody", r
        assert r["removed"] == [] and our_roles(stack, c) == [f"arn:aws:iam::{ACCOUNT}:role/{name}"]
    assert "permission-set:admin" in err
    assert can_admin(stack, "prod", session)


def test_6_audit_lines_go_out_before_a_slow_event_bus(stack):
    alice = stack.create_user("alice", {TAG: "true"})
    # EventBridge answers after a minute (a VPC without its endpoint would never answer).
    stack.emu("/_emu/latency", {"events": 60000})
    event = json.dumps(ct_event("TagUser", {"userName": "alice", "tags": [{"key": TAG, "value": "true"}]}))
    try:
        p = subprocess.run([BINARY, "handle-event", "-"], env=stack.function_env(), input=event,
                           capture_output=True, text=True, timeout=45)
        stderr, report = p.stderr, (json.loads(p.stdout) if p.stdout.strip() else None)
    except subprocess.TimeoutExpired as e:
        stderr, report = (e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""), None
    finally:
        stack.ran()
        stack.emu("/_emu/latency", {})
    # The grants landed and were recorded as they landed, whatever the bus did after.
    grants = [r for r in audit_records(stderr) if r["action"] == "grant"]
    assert sorted(r["cluster"] for r in grants) == sorted(CLUSTERS), stderr[-2000:]
    assert can_admin(stack, "prod", alice)
    # The bus had its own bounded time, which ran out: the run finished and says the events were not put.
    assert report is not None, "the run waited for the bus past its own bound"
    assert report["events"]["published"] == 0 and "did not finish within" in report["events"]["errors"][0], report


def set_function_rbac(st, cluster, present):
    verb = "apply" if present else "delete"
    st.kubectl_admin(cluster, [verb, "-f", os.path.join(REPO, "infra", "rbac.yaml")])


def node_authenticates(st, cluster):
    who = st.kubectl_as(cluster, st.node_creds, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
    return who.returncode == 0 and who.stdout.startswith("system:node:ip-")


def test_7a_no_role_is_granted_where_aws_auth_cannot_be_read(st):
    node = f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"
    st.iam().tag_role(RoleName=NODE_ROLE, Tags=[{"Key": TAG, "Value": "true"}])
    set_function_rbac(st, "mixed", False)  # the function may no longer read aws-auth there
    try:
        rc, report, err = st.run_reconcile(clusters="mixed")
        assert rc != 0
        # EKS would prefer a STANDARD entry over the node row it cannot see: none was made.
        assert node not in st.entries("mixed")
        assert node_authenticates(st, "mixed")
        r = cluster_report(report, "mixed")
        assert r["status"] == "failed" and r["store"] == "access-entries", r
        assert [(s["arn"], s["kind"]) for s in r["skipped"]] == [(node, "node-rows-unread")], r["skipped"]
        assert "no access entry was written" in r["error"], r["error"]
    finally:
        set_function_rbac(st, "mixed", True)


def test_7b_a_grant_of_a_role_that_became_a_node_role_is_removed(st):
    ops = st.create_role("ops", {TAG: "true"})
    session = st.assume(ops, "jane")
    rc, report, err = st.run_reconcile(clusters="mixed")
    assert rc == 0, err
    assert ops in st.entries("mixed") and can_admin(st, "mixed", session)
    # A node group now uses the role: EKS adds its node row to aws-auth.
    cm = st.get_aws_auth("mixed")
    cm["data"]["mapRoles"] += (f"- rolearn: {ops}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n"
                               "  groups:\n    - system:bootstrappers\n    - system:nodes\n")
    code, body = st.admin("PUT", "mixed", st.CM, cm)
    assert code == 200, body
    rc, report, err = st.run_reconcile(clusters="mixed")
    assert rc == 0, err
    r = cluster_report(report, "mixed")
    assert r["removed"] == [ops], r
    assert [(s["arn"], s["kind"]) for s in r["skipped"]] == [(ops, "node-role")], r["skipped"]
    assert ops not in st.entries("mixed")
    assert [a["action"] for a in audit_records(err) if a["principal"] == ops] == ["revoke", "skip"]


def test_8a_the_expiry_wake_up_never_forces(stack):
    untagged_everyone_guarded(stack, ["u1", "u2"])
    rc, report, err = stack.handle_event({"action": "reconcile", "reason": "expiry", "force": True})
    assert rc != 0 and "never part of the expiry wake-up" in err, err
    assert len(map_users(stack.get_aws_auth("prod"))) == 2, "nothing removed"


def test_8b_a_force_is_honoured_only_while_fresh(stack):
    untagged_everyone_guarded(stack, ["u1", "u2"])
    an_hour_ago = at(-3600)
    for payload, needle in [({"action": "reconcile", "force": True}, "force needs forceAt"),
                            ({"action": "reconcile", "force": True, "forceAt": an_hour_ago}, "honoured for 5 minutes")]:
        rc, report, err = stack.handle_event(payload)
        assert rc != 0 and needle in err, err
        assert len(map_users(stack.get_aws_auth("prod"))) == 2, "nothing removed"
    rc, report, err = stack.handle_event(force_payload())
    assert rc == 0, err
    assert map_users(stack.get_aws_auth("prod")) == []


def test_8c_an_event_of_another_account_is_ignored(stack):
    stack.create_user("alice", {TAG: "true"})
    ev = ct_event("TagUser", {"userName": "alice", "tags": [{"key": TAG, "value": "true"}]})
    ev["account"] = ev["detail"]["recipientAccountId"] = "210987654321"
    rc, report, err = stack.handle_event(ev)
    assert rc == 0, err
    assert "210987654321" in report["ignored"] and ACCOUNT in report["ignored"], report
    assert report["clusters"] == [] and audit_records(err) == []
    assert map_users(stack.get_aws_auth("prod")) == []


def test_9_a_warm_function_revokes_where_another_run_migrated_the_grant(stack):
    alice = stack.create_user("alice", {TAG: "true"})
    rt = RuntimeApi()
    fn = subprocess.Popen([BINARY], env=stack.function_env({**lambda_env(rt.address), "CLUSTER_NAMES": "prod"}),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kind, result = rt.invoke({"action": "reconcile"})
        assert kind == "response" and cluster_report(result, "prod")["store"] == "aws-auth", result
        # The cluster moves on; a run elsewhere (the CLI) migrates alice to an access entry.
        stack.set_mode("prod", "API_AND_CONFIG_MAP")
        rc, report, err = stack.run_reconcile(clusters="prod")
        assert rc == 0 and cluster_report(report, "prod")["migrated"] == [user_arn("alice")], err
        assert user_arn("alice") in stack.entries("prod")
        # Alice is untagged; her event reaches the warm function, whose cache still says CONFIG_MAP.
        stack.iam().untag_user(UserName="alice", TagKeys=[TAG])
        kind, result = rt.invoke(ct_event("UntagUser", {"userName": "alice", "tagKeys": [TAG]}))
        stack.ran()
        assert kind == "response", result
        r = cluster_report(result, "prod")
        assert r["store"] == "access-entries" and r["removed"] == [user_arn("alice")], r
        assert user_arn("alice") not in stack.entries("prod")
        assert not can_admin(stack, "prod", alice)
    finally:
        fn.terminate()
        fn.wait(timeout=10)
        rt.close()


def test_10_an_unreachable_cluster_is_reported_under_the_store_its_mode_chose(stack):
    with open(os.path.join(stack.dir, "ca.crt")) as f:
        ca = f.read()
    stack.create_user("alice", {TAG: "true"})
    stack.emu("/_emu/eks/prod", {"endpoint": "https://127.0.0.1:9", "ca_pem": ca})  # nothing listens there
    rc, report, err = stack.run_reconcile()
    assert rc != 0
    r = cluster_report(report, "prod")
    assert r["status"] == "failed" and r["store"] == "aws-auth", r
    assert cluster_report(report, "staging")["status"] == "ok"
