"""Access entries, end to end: three clusters, one per EKS authentication mode.

cm: CONFIG_MAP (aws-auth only), mixed: API_AND_CONFIG_MAP (entry first, then aws-auth), api: API (entries only).
Each runs a real kube-apiserver; the local authenticator follows the mode as EKS does and maps
AmazonEKSClusterAdminPolicy to cluster-admin. Users reach the clusters with `eks-admin-sync token`.
"""

import json
import subprocess
import time

import pytest

from lambda_runtime_api import RuntimeApi, lambda_env
from stack import (ACCOUNT, ADMIN_POLICY, BINARY, NODE_ROLE, REPO, THREE_MODES, VIEW_POLICY, audit_records,
                   cluster_report, ct_event, map_users, metric_lines)

MODES = THREE_MODES
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
VIEWER = f"arn:aws:iam::{ACCOUNT}:user/viewer"
NODE = f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"
TAG = {"eks-cluster-admin": "true"}
GROUP_MARK = "eks-admin-sync:default"


def seed_foreign(st):
    """What other people put on the entry clusters: the node role (EC2_LINUX) and a hand-made view entry."""
    viewer = st.create_user("viewer")
    eks = st.eks()
    for c in ("mixed", "api"):
        eks.create_access_entry(clusterName=c, principalArn=NODE, type="EC2_LINUX")
        eks.create_access_entry(clusterName=c, principalArn=VIEWER, username="viewer", kubernetesGroups=["readers"],
                                tags={"team": "platform"})
        eks.associate_access_policy(clusterName=c, principalArn=VIEWER, policyArn=VIEW_POLICY,
                                    accessScope={"type": "cluster"})
    return viewer


def foreign(st, cluster):
    return {a: e for a, e in st.entries(cluster).items() if a in (NODE, VIEWER)}


def can_admin(st, cluster, creds):
    return st.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def stores(report):
    return {c["cluster"]: c["store"] for c in report["clusters"]}


def test_tag_then_untag_on_every_mode(st):
    viewer = seed_foreign(st)
    before = {c: foreign(st, c) for c in ("mixed", "api")}
    alice = st.create_user("alice", TAG)
    assert not any(can_admin(st, c, alice) for c in MODES)

    rc, report, err = st.handle_event(ct_event("TagUser", {"userName": "alice", "tags": [
        {"key": "eks-cluster-admin", "value": "true"}]}))
    assert rc == 0, err
    assert stores(report) == {"cm": "aws-auth", "mixed": "access-entries", "api": "access-entries"}
    for c in MODES:
        assert cluster_report(report, c)["added"] == [ALICE], report
        assert can_admin(st, c, alice), c
    user_id = st.iam().get_user(UserName="alice")["User"]["UserId"]
    for c in ("mixed", "api"):
        e = st.entries(c)[ALICE]
        assert e["type"] == "STANDARD" and e["username"] == "alice"
        # system:masters cannot be written in an entry (the policy gives admin); the one group is our mark.
        assert e["kubernetesGroups"] == [GROUP_MARK], e
        assert e["policies"] == {ADMIN_POLICY: {"type": "cluster", "namespaces": []}}
        assert e["tags"] == {"eks-admin-sync": "default", "eks-admin-sync-user-id": user_id,
                             "eks-admin-sync-tag-key": "eks-cluster-admin",
                             "eks-admin-sync-source": "tag:eks-cluster-admin"}
    # aws-auth is written only where it is the store.
    assert [u["userarn"] for u in map_users(st.get_aws_auth("cm"))] == [ALICE]
    for c in ("mixed", "api"):
        assert map_users(st.get_aws_auth(c)) == []
    # On the API cluster the function signed no token and made no Kubernetes call.
    assert st.function_requests("api") == []
    records = audit_records(err)
    assert {(r["cluster"], r["store"], r["action"]) for r in records} == {
        ("cm", "aws-auth", "grant"), ("mixed", "access-entries", "grant"), ("api", "access-entries", "grant")}

    st.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    rc, report, err = st.handle_event(ct_event("UntagUser", {"userName": "alice", "tagKeys": ["eks-cluster-admin"]}))
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["removed"] == [ALICE], report
    for c in MODES:
        assert not can_admin(st, c, alice), c
    for c in ("mixed", "api"):
        assert ALICE not in st.entries(c)
        assert foreign(st, c) == before[c], "other people's entries are never changed"
    assert st.function_requests("api") == []
    # The hand-made view entry still works, and still only views; the node role still authenticates as a node.
    viewing = st.kubectl_as("api", viewer, ["get", "pods", "-A"])
    assert viewing.returncode == 0, viewing.stderr
    assert st.kubectl_as("api", viewer, ["create", "namespace", "x"]).returncode != 0
    who = st.kubectl_as("api", st.node_creds, ["auth", "whoami", "-o", "json"])
    assert who.returncode == 0, who.stderr
    info = json.loads(who.stdout)["status"]["userInfo"]
    assert info["username"].startswith("system:node:") and "system:nodes" in info["groups"]


def test_a_failed_iam_read_removes_nothing(st):
    seed_foreign(st)
    alice = st.create_user("alice", TAG)
    rc, report, err = st.run_reconcile()
    assert rc == 0, err
    entries = {c: st.entries(c) for c in ("mixed", "api")}
    st.emu("/_emu/faults", {"label": "iam:GetAccountAuthorizationDetails", "status": 503,
                            "code": "ServiceUnavailable", "count": -1})
    rc, report, err = st.run_reconcile()
    assert rc != 0 and "nothing was written" in err, err
    st.emu("/_emu/faults", {})
    for c in ("mixed", "api"):
        assert st.entries(c) == entries[c]
    assert all(can_admin(st, c, alice) for c in MODES)


def test_migration_config_map_to_api_loses_nothing(st):
    alice = st.create_user("alice", TAG)
    bob = st.create_user("bob", TAG)
    carol = st.create_user("carol")
    hand = [{"userarn": f"arn:aws:iam::{ACCOUNT}:user/carol", "username": "carol", "groups": ["system:masters"]}]
    rc, report, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    cm = st.get_aws_auth("cm")
    users = map_users(cm)
    st.put_aws_auth("cm", {**cm["data"], "mapUsers": json.dumps(users + hand)}, cm["metadata"]["annotations"])
    roles_before = st.get_aws_auth("cm")["data"]["mapRoles"]
    people = {"alice": alice, "bob": bob, "carol": carol}
    assert all(can_admin(st, "cm", c) for c in people.values())

    # CONFIG_MAP → API_AND_CONFIG_MAP: nothing changes until the function runs (aws-auth is still read).
    st.set_mode("cm", "API_AND_CONFIG_MAP")
    assert all(can_admin(st, "cm", c) for c in people.values())
    rc, report, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    r = cluster_report(report, "cm")
    assert r["store"] == "access-entries"
    assert r["added"] == [ALICE, BOB] and sorted(r["migrated"]) == [ALICE, BOB] and r["removed"] == [], r
    assert {(x["action"], x["store"]) for x in audit_records(err)} == {("grant", "access-entries"),
                                                                       ("migrate", "aws-auth")}
    migrated = [m for m in metric_lines(err) if m["Cluster"] == "cm"][0]
    assert migrated["Migrated"] == 2 and migrated["Revoked"] == 0
    cm = st.get_aws_auth("cm")
    assert map_users(cm) == hand, "our mappings moved, the hand-made one stays"
    assert cm["data"]["mapRoles"] == roles_before
    assert set(st.entries("cm")) == {ALICE, BOB}
    assert all(can_admin(st, "cm", c) for c in people.values())
    # A second run finds nothing to do.
    rc, report, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    r = cluster_report(report, "cm")
    assert (r["added"], r["removed"], r["migrated"], r["unchanged"]) == ([], [], [], 2), r

    # → API: the entries carry on; aws-auth is no longer read by EKS, and is left as people wrote it.
    st.set_mode("cm", "API")
    rc, report, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    r = cluster_report(report, "cm")
    assert (r["store"], r["added"], r["removed"], r["unchanged"]) == ("access-entries", [], [], 2), r
    assert can_admin(st, "cm", alice) and can_admin(st, "cm", bob)
    assert not can_admin(st, "cm", carol), "in API mode EKS ignores aws-auth"
    assert map_users(st.get_aws_auth("cm")) == hand


def test_untagged_before_migration_is_revoked_from_aws_auth(st):
    """In API_AND_CONFIG_MAP a stale aws-auth mapping still grants: it is revoked, not left behind."""
    alice = st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    st.set_mode("cm", "API_AND_CONFIG_MAP")
    st.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "cm"})
    assert rc == 0, err
    r = cluster_report(report, "cm")
    assert r["removed"] == [ALICE] and r["migrated"] == [] and r["added"] == [], r
    assert [x["action"] for x in audit_records(err)] == ["revoke"]
    assert map_users(st.get_aws_auth("cm")) == []
    assert not can_admin(st, "cm", alice)


def test_guard_and_drift_on_access_entries(st):
    for n in ("alice", "bob", "dave"):
        st.create_user(n, TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    # Drift by hand on an owned entry: its policy narrowed to a namespace, a view policy added, groups changed.
    eks = st.eks()
    eks.associate_access_policy(clusterName="api", principalArn=ALICE, policyArn=ADMIN_POLICY,
                                accessScope={"type": "namespace", "namespaces": ["default"]})
    eks.associate_access_policy(clusterName="api", principalArn=ALICE, policyArn=VIEW_POLICY,
                                accessScope={"type": "cluster"})
    eks.update_access_entry(clusterName="api", principalArn=ALICE, kubernetesGroups=["hand-picked", GROUP_MARK])
    rc, report, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    assert cluster_report(report, "api")["updated"] == [ALICE]
    e = st.entries("api")[ALICE]
    assert e["policies"] == {ADMIN_POLICY: {"type": "cluster", "namespaces": []}} and e["kubernetesGroups"] == [GROUP_MARK]

    # Three removals against MAX_REMOVALS=2: refused, recorded, counted.
    for n in ("alice", "bob", "dave"):
        st.iam().untag_user(UserName=n, TagKeys=["eks-cluster-admin"])
    st.create_user("erin", TAG)  # someone still carries the key
    rc, report, err = st.run_reconcile(clusters="api", extra={"MAX_REMOVALS": "2"})
    assert rc != 0 and "max-removals" in err
    r = cluster_report(report, "api")
    assert r["status"] == "guarded" and r["removed"] == [] and r["added"] == [f"arn:aws:iam::{ACCOUNT}:user/erin"]
    assert sorted(x["principal"] for x in audit_records(err) if x["action"] == "guard") == sorted(
        [ALICE, BOB, f"arn:aws:iam::{ACCOUNT}:user/dave"])
    assert [m["Guarded"] for m in metric_lines(err)] == [1]
    assert {ALICE, BOB} <= set(st.entries("api"))
    rc, report, err = st.run_reconcile(clusters="api", extra={"MAX_REMOVALS": "2"}, force=True)
    assert rc == 0, err
    assert len(cluster_report(report, "api")["removed"]) == 3
    assert set(st.entries("api")) == {f"arn:aws:iam::{ACCOUNT}:user/erin"}


def test_ownership_by_tag_and_principal_id(st):
    st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    old_id = st.entries("api")[ALICE]["tags"]["eks-admin-sync-user-id"]
    # Alice is deleted and re-created under the same ARN: her old entry goes, a new one is made for the new id.
    st.delete_user("alice")
    alice = st.create_user("alice", TAG)
    new_id = st.iam().get_user(UserName="alice")["User"]["UserId"]
    assert new_id != old_id
    assert not can_admin(st, "api", alice), "EKS binds an entry to the principal's id"
    st.reset_calls()
    rc, report, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    r = cluster_report(report, "api")
    assert r["removed"] == [ALICE] and r["added"] == [ALICE], r
    assert st.entries("api")[ALICE]["tags"]["eks-admin-sync-user-id"] == new_id
    # A replacement: EKS allows one entry per principal, so the old one goes first, the new one right after.
    assert st.writes("api") == [("DeleteAccessEntry", ALICE), ("CreateAccessEntry", ALICE),
                                ("AssociateAccessPolicy", ALICE)], st.writes("api")
    assert can_admin(st, "api", alice)

    # A person takes the entry over by removing both marks (the tag and the group): from then on it is
    # theirs, never changed or removed.
    eks = st.eks()
    entry_arn = eks.describe_access_entry(clusterName="api", principalArn=ALICE)["accessEntry"]["accessEntryArn"]
    eks.untag_resource(resourceArn=entry_arn, tagKeys=["eks-admin-sync"])
    eks.update_access_entry(clusterName="api", principalArn=ALICE, kubernetesGroups=[])
    rc, report, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    assert [s["kind"] for s in cluster_report(report, "api")["skipped"]] == ["foreign"]
    st.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    rc, report, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    assert cluster_report(report, "api")["removed"] == []
    assert ALICE in st.entries("api")


def test_eventual_consistency_and_wrong_settings(st):
    alice = st.create_user("alice", TAG)
    # Right after CreateUser EKS may call the principal invalid; right after create, associate may 404.
    st.emu("/_emu/faults", {"label": "eks:CreateAccessEntry", "status": 400, "code": "InvalidParameterException",
                            "message": "The specified principalArn is invalid: invalid principal.", "count": 2})
    st.emu("/_emu/faults", {"label": "eks:AssociateAccessPolicy", "status": 404,
                            "code": "ResourceNotFoundException", "message": "no entry", "count": 2})
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    assert cluster_report(report, "api")["added"] == [ALICE]
    assert st.entries("api")[ALICE]["policies"] == {ADMIN_POLICY: {"type": "cluster", "namespaces": []}}
    assert can_admin(st, "api", alice)
    calls = st.calls()
    assert calls.get("eks:CreateAccessEntry(fault InvalidParameterException)") == 2
    assert calls.get("eks:AssociateAccessPolicy(fault ResourceNotFoundException)") == 2

    # A principal that never becomes valid: a bounded number of tries, then a clear error.
    st.create_user("bob", TAG)
    st.emu("/_emu/faults", {"label": "eks:CreateAccessEntry", "status": 400, "code": "InvalidParameterException",
                            "message": "The specified principalArn is invalid: invalid principal.", "count": -1})
    rc, report, err = st.handle_event({"action": "reconcile", "user": "bob"}, {"CLUSTER_NAMES": "api"})
    st.emu("/_emu/faults", {})
    assert rc != 0 and "still calls the principal invalid" in err, err

    # ACCESS_STORE forced against a cluster's mode: refused with advice, nothing written.
    rc, report, err = st.run_reconcile(clusters="api", extra={"ACCESS_STORE": "aws-auth"})
    assert rc != 0 and "does not read aws-auth" in err, err
    rc, report, err = st.run_reconcile(clusters="cm", extra={"ACCESS_STORE": "access-entries"})
    assert rc != 0 and "has no access entries" in err, err
    assert map_users(st.get_aws_auth("cm")) == []


def test_tag_event_cost_on_an_entries_cluster(st):
    st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    st.reset_calls()
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    assert cluster_report(report, "api")["unchanged"] == 1
    eks = {k: v for k, v in st.calls().items() if k.startswith("eks:")}
    # Two access calls: the entry and its policies (an entry left without them is repaired on events too).
    # DescribeCluster and ListAccessPolicies: this CLI process is cold; a warm Lambda has the cluster cached and
    # the policies checked.
    assert eks == {"eks:DescribeCluster": 1, "eks:ListAccessPolicies": 1, "eks:DescribeAccessEntry": 1,
                   "eks:ListAssociatedAccessPolicies": 1}, eks


def test_an_entry_left_without_its_policy_is_repaired_by_an_event(st):
    """A create cut short between CreateAccessEntry and AssociateAccessPolicy (the deadline) leaves an owned
    entry that grants nothing; in API_AND_CONFIG_MAP it would shadow the user's aws-auth mapping."""
    alice = st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    st.eks().disassociate_access_policy(clusterName="api", principalArn=ALICE, policyArn=ADMIN_POLICY)
    assert not can_admin(st, "api", alice)
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    assert cluster_report(report, "api")["updated"] == [ALICE], report
    assert [x["action"] for x in audit_records(err)] == ["update"]
    assert st.entries("api")[ALICE]["policies"] == {ADMIN_POLICY: {"type": "cluster", "namespaces": []}}
    assert can_admin(st, "api", alice)


def test_a_mapping_moves_only_after_its_entry_is_complete(st):
    alice = st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    st.set_mode("cm", "API_AND_CONFIG_MAP")
    # The policy cannot be associated: the entry is taken back (an entry without policies would shadow the
    # mapping in this mode) and the aws-auth mapping stays.
    st.emu("/_emu/faults", {"label": "eks:AssociateAccessPolicy", "status": 404,
                            "code": "ResourceNotFoundException", "message": "no entry", "count": -1})
    rc, report, err = st.run_reconcile(clusters="cm")
    st.emu("/_emu/faults", {})
    assert rc != 0 and "AssociateAccessPolicy" in err, err
    assert [u["userarn"] for u in map_users(st.get_aws_auth("cm"))] == [ALICE]
    assert ALICE not in st.entries("cm"), err
    assert can_admin(st, "cm", alice)
    # The next run makes the entry whole, confirms it, and only then moves the mapping.
    rc, report, err = st.run_reconcile(clusters="cm")
    assert rc == 0, err
    r = cluster_report(report, "cm")
    assert r["added"] == [ALICE] and r["migrated"] == [ALICE], r
    assert map_users(st.get_aws_auth("cm")) == []
    assert can_admin(st, "cm", alice)


def test_path_change_event_moves_the_entry(st):
    """UpdateUser with a new path: the old entry sits under an ARN IAM no longer gives; the event finds it."""
    st.create_user("carol", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    st.iam().update_user(UserName="carol", NewPath="/platform/")
    # moto keys user tags by ARN, so a new path loses them (real IAM keeps them): tag again.
    st.iam().tag_user(UserName="carol", Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
    new = f"arn:aws:iam::{ACCOUNT}:user/platform/carol"
    with open(f"{REPO}/events/update-user-path.json") as f:
        ev = json.load(f)
    st.reset_calls()
    rc, report, err = st.handle_event(ev, {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    r = cluster_report(report, "api")
    old = f"arn:aws:iam::{ACCOUNT}:user/carol"
    assert r["removed"] == [old] and r["added"] == [new], r
    assert set(st.entries("api")) == {new}
    # The new entry is made (and given its policy) before the old one goes: carol is never without one.
    assert st.writes("api") == [("CreateAccessEntry", new), ("AssociateAccessPolicy", new),
                                ("DeleteAccessEntry", old)], st.writes("api")


def test_a_race_on_create_and_throttling_are_absorbed(st):
    alice = st.create_user("alice", TAG)
    # Someone (here: the emulator) answers the create with 409: the store reads again and re-plans.
    st.emu("/_emu/faults", {"label": "eks:CreateAccessEntry", "status": 409, "code": "ResourceInUseException",
                            "message": "The specified access entry resource is already in use on this cluster.",
                            "count": 1})
    # EKS throttles: the SDK retries with backoff.
    st.emu("/_emu/faults", {"label": "eks:DescribeAccessEntry", "status": 429, "code": "ThrottlingException",
                            "message": "Rate exceeded", "count": 2})
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    r = cluster_report(report, "api")
    assert r["added"] == [ALICE] and r["attempts"] == 2, r
    calls = st.calls()
    assert calls.get("eks:CreateAccessEntry(fault ResourceInUseException)") == 1
    assert calls.get("eks:DescribeAccessEntry(fault ThrottlingException)") == 2
    assert can_admin(st, "api", alice)
    # A person makes a foreign entry for bob between our read and our write: the re-plan leaves it alone.
    st.create_user("bob", TAG)
    st.eks().create_access_entry(clusterName="api", principalArn=BOB, username="bob-by-hand")
    # The function's read will not see it (its describe answers 404 once), its create then meets it: 409.
    st.emu("/_emu/faults", {"label": "eks:DescribeAccessEntry", "status": 404, "code": "ResourceNotFoundException",
                            "message": "not found", "count": 1})
    rc, report, err = st.handle_event({"action": "reconcile", "user": "bob"}, {"CLUSTER_NAMES": "api"})
    st.emu("/_emu/faults", {})
    assert rc == 0, err
    r = cluster_report(report, "api")
    assert r["added"] == [] and [s["kind"] for s in r["skipped"]] == ["foreign"], r
    assert st.entries("api")[BOB]["username"] == "bob-by-hand"


def test_a_cluster_recreated_in_another_mode_is_described_again(st):
    """A warm function knows 'mixed' as API_AND_CONFIG_MAP; the cluster is re-created in CONFIG_MAP mode.
    EKS answers the access-entry call with InvalidRequestException: the cluster is described again and
    served by aws-auth in the same run."""
    alice = st.create_user("alice", TAG)
    rt = RuntimeApi()
    fn = subprocess.Popen([BINARY], env=st.function_env({**lambda_env(rt.address), "CLUSTER_NAMES": "mixed"}),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
        assert kind == "response" and cluster_report(result, "mixed")["store"] == "access-entries", result
        st.emu("/_emu/eks/mixed", {"endpoint": st.api_url("mixed"), "ca_pem": st.ca_pem,
                                   "authenticationMode": "CONFIG_MAP", "reset_entries": True})
        st.reset_calls()
        kind, result = rt.invoke({"action": "reconcile", "user": "alice"})
        assert kind == "response", result
        r = cluster_report(result, "mixed")
        assert r["store"] == "aws-auth" and r["added"] == [ALICE], r
        calls = st.calls()
        assert calls.get("eks:DescribeAccessEntry") == 1 and calls.get("eks:DescribeCluster") == 1, calls
        assert [u["userarn"] for u in map_users(st.get_aws_auth("mixed"))] == [ALICE]
        assert can_admin(st, "mixed", alice)
    finally:
        fn.terminate()
        fn.wait(timeout=10)
        rt.close()


ADMIN_VIEW_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminViewPolicy"


def test_access_policies_are_checked_against_eks_before_anything_is_written(st):
    """ACCESS_POLICIES is checked against ListAccessPolicies once per process, before the first cluster served
    by access entries is read: a name EKS does not have stops those clusters with the name and EKS's list, and
    nothing is written there (no entry left without its policy); the aws-auth cluster goes on. A newer policy
    works by name."""
    alice = st.create_user("alice", TAG)
    st.reset_calls()
    rc, report, err = st.run_reconcile(extra={"ACCESS_POLICIES": "AmazonEKSClusterAdminPolicy, AmazonEKSAdminViwPolicy"})
    assert rc != 0
    for c in ("mixed", "api"):
        r = cluster_report(report, c)
        assert r["status"] == "failed" and "AmazonEKSAdminViwPolicy" in r["error"], r
        assert "ListAccessPolicies lists" in r["error"] and "AmazonEKSAdminViewPolicy" in r["error"], r["error"]
        assert st.writes(c) == [] and ALICE not in st.entries(c)
    assert cluster_report(report, "cm")["added"] == [ALICE], "the aws-auth cluster does not use access policies"
    calls = st.calls()
    assert calls.get("eks:ListAccessPolicies") == 1, calls
    assert not any(k.startswith("eks:CreateAccessEntry") for k in calls), calls

    # EKS cannot list its policies: the entry clusters fail this run, nothing written; the next run checks again.
    st.emu("/_emu/faults", {"label": "eks:ListAccessPolicies", "status": 500, "code": "ServerException",
                            "message": "injected", "count": -1})
    rc, report, err = st.run_reconcile(clusters="api")
    st.emu("/_emu/faults", {})
    assert rc != 0 and "ListAccessPolicies" in cluster_report(report, "api")["error"], report
    assert ALICE not in st.entries("api")

    # A policy newer than the first four, by name: read-only admin views (Secrets included), no writes.
    rc, report, err = st.run_reconcile(clusters="api", extra={"ACCESS_POLICIES": "AmazonEKSAdminViewPolicy"})
    assert rc == 0, err
    assert st.entries("api")[ALICE]["policies"] == {ADMIN_VIEW_POLICY: {"type": "cluster", "namespaces": []}}
    assert st.kubectl_as("api", alice, ["get", "secrets", "-A"]).returncode == 0
    denied = st.kubectl_as("api", alice, ["delete", "configmap", "kube-root-ca.crt", "-n", "default"])
    assert denied.returncode != 0 and "forbidden" in (denied.stderr + denied.stdout).lower(), denied.stderr
