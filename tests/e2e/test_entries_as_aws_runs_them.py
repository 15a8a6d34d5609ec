"""Access entries as real AWS runs them: ownership that survives a lost tag, replacements that are one change,
an audit trail that survives a failed run, two deployments on one principal, and the emulator refusing what
EKS refuses. Three clusters, one per authentication mode (see test_access_entries.py)."""

import os

import botocore.exceptions
import pytest

from stack import (ACCOUNT, ADMIN_POLICY, NODE_ROLE, REPO, audit_records, cluster_report, ct_event,
                   map_users, metric_lines)

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{ACCOUNT}:user/carol"
TAG = {"eks-cluster-admin": "true"}


def can_admin(st, cluster, creds):
    return st.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def entry_arn(st, cluster, principal):
    return st.eks().describe_access_entry(clusterName=cluster, principalArn=principal)["accessEntry"]["accessEntryArn"]


def untag(st, name):
    st.iam().untag_user(UserName=name, TagKeys=["eks-cluster-admin"])


def test_stripped_tags_make_the_entry_unclear_never_a_silent_success(st):
    """A tag-hygiene tool strips every tag from an owned entry, then the user is untagged: the run fails naming
    the entry (its group mark is still there), nothing is changed; restoring the tags hands it back and the
    revocation goes through."""
    alice = st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    eks = st.eks()
    arn = entry_arn(st, "api", ALICE)
    tags = eks.list_tags_for_resource(resourceArn=arn)["tags"]
    eks.untag_resource(resourceArn=arn, tagKeys=list(tags))
    untag(st, "alice")
    for run in (lambda: st.handle_event(ct_event("UntagUser", {"userName": "alice", "tagKeys": ["eks-cluster-admin"]}),
                                        {"CLUSTER_NAMES": "api"}),
                lambda: st.run_reconcile(clusters="api")):
        rc, report, err = run()
        assert rc != 0, err
        r = cluster_report(report, "api")
        assert r["status"] == "conflict" and r["removed"] == [], r
        assert [(s["kind"], s["arn"]) for s in r["skipped"]] == [("unclear", ALICE)], r
        assert ALICE in err and "ownership unclear" in err, err
        assert [x["action"] for x in audit_records(err)] == ["skip"]
    assert ALICE in st.entries("api"), "an unclear entry is never removed"
    assert can_admin(st, "api", alice)

    # Restored: ours again, and the untagged user is revoked (by her event: a full reconcile would rightly
    # meet the no-tagged-principals guard, nobody carrying the key any more).
    eks.tag_resource(resourceArn=arn, tags=tags)
    rc, report, err = st.handle_event(ct_event("UntagUser", {"userName": "alice", "tagKeys": ["eks-cluster-admin"]}),
                                      {"CLUSTER_NAMES": "api"})
    assert rc == 0, err
    assert cluster_report(report, "api")["removed"] == [ALICE]
    assert ALICE not in st.entries("api")
    assert not can_admin(st, "api", alice)


def test_a_lost_group_mark_is_unclear_too_and_both_gone_is_a_takeover(st):
    st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="mixed")
    assert rc == 0, err
    eks = st.eks()
    eks.update_access_entry(clusterName="mixed", principalArn=ALICE, kubernetesGroups=["hand-picked"])
    rc, report, err = st.run_reconcile(clusters="mixed")
    assert rc != 0 and ALICE in err, err
    assert cluster_report(report, "mixed")["status"] == "conflict"
    assert st.entries("mixed")[ALICE]["kubernetesGroups"] == ["hand-picked"], "left as the person wrote it"
    # Both records removed: the person has taken it over; the run is clean and never touches it again.
    eks.untag_resource(resourceArn=entry_arn(st, "mixed", ALICE), tagKeys=["eks-admin-sync"])
    untag(st, "alice")
    rc, report, err = st.handle_event({"action": "reconcile", "user": "alice"}, {"CLUSTER_NAMES": "mixed"})
    assert rc == 0, err
    assert cluster_report(report, "mixed")["removed"] == []
    assert ALICE in st.entries("mixed")


def test_replaced_users_keep_admin_in_one_run_under_max_removals(st):
    """Two users deleted and re-created under their names (new ids) with MAX_REMOVALS=1: each is one
    replacement, not a removal for the cap. Both keep admin on both stores, exit 0, no duplicate rows."""
    for n in ("alice", "bob"):
        st.create_user(n, TAG)
    rc, _, err = st.run_reconcile(clusters="cm api")
    assert rc == 0, err
    creds = {}
    for n in ("alice", "bob"):
        st.delete_user(n)
        creds[n] = st.create_user(n, TAG)
    rc, report, err = st.run_reconcile(clusters="cm api", extra={"MAX_REMOVALS": "1"})
    assert rc == 0, err
    for c in ("cm", "api"):
        r = cluster_report(report, c)
        assert r["status"] == "ok" and "guard" not in r, r
        assert sorted(r["added"]) == [ALICE, BOB] and sorted(r["removed"]) == [ALICE, BOB], r
        for n in ("alice", "bob"):
            assert can_admin(st, c, creds[n]), (c, n)
    users = [u["userarn"] for u in map_users(st.get_aws_auth("cm"))]
    assert sorted(users) == [ALICE, BOB], f"one row each: {users}"
    ids = {n: st.iam().get_user(UserName=n)["User"]["UserId"] for n in ("alice", "bob")}
    e = st.entries("api")
    assert e[ALICE]["tags"]["eks-admin-sync-user-id"] == ids["alice"]
    assert e[BOB]["tags"]["eks-admin-sync-user-id"] == ids["bob"]
    reasons = [x["reason"] for x in audit_records(err) if x["action"] == "revoke"]
    assert len(reasons) == 4 and all("another IAM principal now holds this ARN" in x for x in reasons), reasons


def read_only_aws_auth(st, cluster):
    st.kubectl_admin(cluster, ["patch", "role", "eks-admin-sync", "-n", "kube-system", "--type=json", "-p",
                               '[{"op":"replace","path":"/rules/0/verbs","value":["get"]}]'])


def test_entries_written_and_audited_when_the_retirement_is_refused(st):
    """On an API_AND_CONFIG_MAP cluster whose aws-auth the function may read but not write: every entry
    created or deleted in the run has its audit record, the report says what landed and what did not, and
    the run fails naming the retirement."""
    for n in ("alice", "bob"):
        st.create_user(n, TAG)
    # Rows in aws-auth, as a deployment before the migration wrote them.
    rc, _, err = st.run_reconcile(clusters="mixed", extra={"ACCESS_STORE": "aws-auth"})
    assert rc == 0, err
    st.create_user("carol", TAG)
    rc, _, err = st.handle_event({"action": "reconcile", "user": "carol"}, {"CLUSTER_NAMES": "mixed"})
    assert rc == 0, err
    assert set(st.entries("mixed")) == {CAROL}
    before = map_users(st.get_aws_auth("mixed"))
    read_only_aws_auth(st, "mixed")
    try:
        untag(st, "bob")
        untag(st, "carol")
        rc, report, err = st.run_reconcile(clusters="mixed")
    finally:
        st.kubectl_admin("mixed", ["apply", "-f", os.path.join(REPO, "infra", "rbac.yaml")])
    assert rc != 0, err
    r = cluster_report(report, "mixed")
    assert r["status"] == "failed" and "403" in r["error"] and "aws-auth" in r["error"], r
    assert r["written"] and r["added"] == [ALICE] and r["removed"] == [CAROL], r
    assert sorted(r["notLanded"]) == [ALICE, BOB], r
    records = {(x["action"], x["principal"], x["store"], x["applied"]) for x in audit_records(err)}
    assert records == {("grant", ALICE, "access-entries", True), ("revoke", CAROL, "access-entries", True)}, records
    m = [x for x in metric_lines(err) if x["Cluster"] == "mixed"][0]
    assert (m["Granted"], m["Revoked"], m["Failed"]) == (1, 1, 1), m
    assert set(st.entries("mixed")) == {ALICE}
    assert map_users(st.get_aws_auth("mixed")) == before, "nothing retired"

    # Writable again: the next run retires both rows (alice moved, bob revoked).
    rc, report, err = st.run_reconcile(clusters="mixed")
    assert rc == 0, err
    r = cluster_report(report, "mixed")
    assert r["migrated"] == [ALICE] and r["removed"] == [BOB], r
    assert map_users(st.get_aws_auth("mixed")) == []


def test_entries_are_written_when_aws_auth_cannot_be_read(st):
    alice = st.create_user("alice", TAG)
    st.kubectl_admin("mixed", ["delete", "rolebinding", "eks-admin-sync", "-n", "kube-system"])
    try:
        rc, report, err = st.run_reconcile(clusters="mixed")
    finally:
        st.kubectl_admin("mixed", ["apply", "-f", os.path.join(REPO, "infra", "rbac.yaml")])
    assert rc != 0, err
    r = cluster_report(report, "mixed")
    assert r["added"] == [ALICE] and "could not be retired" in r["error"], r
    assert [x["action"] for x in audit_records(err)] == ["grant"]
    assert can_admin(st, "mixed", alice)


def test_two_deployments_granting_one_principal(st):
    """EKS allows one entry per principal: the second deployment reports whose entry it is."""
    st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api", extra={"DEPLOYMENT_ID": "platform-a"})
    assert rc == 0, err
    rc, report, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    [skip] = cluster_report(report, "api")["skipped"]
    assert skip["kind"] == "foreign" and '"platform-a"' in skip["reason"], skip
    assert st.entries("api")[ALICE]["tags"]["eks-admin-sync"] == "platform-a"


def test_the_emulator_refuses_what_eks_refuses(st):
    eks = st.eks()

    def code_and_message(call, **kw):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call(**kw)
        return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]

    # One step at a time (EKS user guide: CONFIG_MAP -> API_AND_CONFIG_MAP -> API).
    assert code_and_message(eks.update_cluster_config, name="cm", accessConfig={"authenticationMode": "API"}) == (
        "InvalidParameterException", "Unsupported authentication mode update from CONFIG_MAP to API")
    # Policies only on STANDARD (and EC2, Auto Mode) entries: InvalidParameterException, not the wrong-mode error.
    node = f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"
    eks.create_access_entry(clusterName="api", principalArn=node, type="EC2_LINUX")
    code, message = code_and_message(eks.associate_access_policy, clusterName="api", principalArn=node,
                                     policyArn=ADMIN_POLICY, accessScope={"type": "cluster"})
    assert code == "InvalidParameterException" and 'type of "STANDARD"' in message, message
    auto = st.iam().create_role(RoleName="auto-node", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    eks.create_access_entry(clusterName="api", principalArn=auto, type="EC2")
    eks.associate_access_policy(clusterName="api", principalArn=auto, policyArn=ADMIN_POLICY,
                                accessScope={"type": "cluster"})
    # An assumed-role ARN, and an IAM ARN that is nobody.
    assert code_and_message(eks.create_access_entry, clusterName="api",
                            principalArn=f"arn:aws:sts::{ACCOUNT}:assumed-role/x/y") == (
        "InvalidParameterException", "The principalArn parameter format is not valid")
    assert code_and_message(eks.create_access_entry, clusterName="api", principalArn=f"arn:aws:iam::{ACCOUNT}:user/nobody") == (
        "InvalidParameterException", "The specified principalArn is invalid: invalid principal.")
    st.iam().delete_role(RoleName="auto-node")


def test_an_update_cut_short_is_audited_for_what_landed(st):
    """An update that needs several calls (a new username, then a mark tag a tool removed) fails half way: the
    username change landed and has its audit record; the run fails naming the call that did not."""
    st.create_user("alice", TAG)
    rc, _, err = st.run_reconcile(clusters="api")
    assert rc == 0, err
    eks = st.eks()
    eks.untag_resource(resourceArn=entry_arn(st, "api", ALICE), tagKeys=["eks-admin-sync-user-id"])
    st.emu("/_emu/faults", {"label": "eks:TagResource", "status": 400, "code": "AccessDeniedException",
                            "message": "not authorized to perform eks:TagResource", "count": 1})
    rc, report, err = st.run_reconcile(clusters="api", extra={"USERNAME_TEMPLATE": "admin-{{UserName}}"})
    assert rc != 0, err
    r = cluster_report(report, "api")
    assert r["status"] == "failed" and "TagResource" in r["error"], r
    assert r["written"] and r["updated"] == [ALICE], r
    [rec] = [x for x in audit_records(err) if x["action"] == "update"]
    assert rec["applied"] and rec["username"] == "admin-alice" and rec["usernameBefore"] == "alice", rec
    assert st.entries("api")[ALICE]["username"] == "admin-alice"
    # The next run finishes it.
    rc, report, err = st.run_reconcile(clusters="api", extra={"USERNAME_TEMPLATE": "admin-{{UserName}}"})
    assert rc == 0, err
    assert "eks-admin-sync-user-id" in st.entries("api")[ALICE]["tags"]
