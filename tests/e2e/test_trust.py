"""Trust: the removal guard and its override, ownership that survives and is per deployment, taking an
entry over by hand, the audit trail and metrics, deadlines per cluster, and failed reads that remove nothing."""

import os
import socket
import time

import yaml

from stack import (ACCOUNT, audit_records, cluster_report, force_payload, map_users, metric_lines, no_ids, ours, owned,
                   record)

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
TAG = "eks-cluster-admin"


def arn(name):
    return f"arn:aws:iam::{ACCOUNT}:user/{name}"


def grant(stack, names, env=None):
    for n in names:
        stack.create_user(n, {TAG: "true"})
    rc, report, err = stack.handle_event("scheduled.json", env)
    assert rc == 0, err
    return report


def edit(stack, cluster, fn):
    """A person editing aws-auth by hand (read, change, replace with the resourceVersion read)."""
    cm = stack.get_aws_auth(cluster)
    fn(cm)
    code, body = stack.admin("PUT", cluster, stack.CM, cm)
    assert code == 200, body


def rv(stack, cluster):
    return stack.get_aws_auth(cluster)["metadata"]["resourceVersion"]


def test_typo_in_the_tag_key_removes_nothing_until_forced(stack):
    names = ["u1", "u2", "u3", "u4"]
    grant(stack, names)
    before = {c: rv(stack, c) for c in ("prod", "staging")}
    typo = {"ADMIN_TAG_KEY": "eks-cluster-admn"}

    rc, report, err = stack.handle_event("scheduled.json", typo)
    assert rc != 0
    assert "record-tag-key" in err and '"force":true' in err, err
    assert {c["status"] for c in report["clusters"]} == {"guarded"}
    assert {c: rv(stack, c) for c in ("prod", "staging")} == before, "nothing written"
    guards = [r for r in audit_records(err) if r["action"] == "guard"]
    assert sorted({r["principal"] for r in guards}) == sorted(arn(n) for n in names)
    assert sum(m["Guarded"] for m in metric_lines(err)) == 2

    # The CLI's plan shows it, and --force lets one run through.
    p = stack.run(["plan"], typo)
    assert p.returncode != 0 and "GUARDED" in p.stdout, p.stdout
    p = stack.run(["reconcile", "--force"], typo)
    assert p.returncode == 0, p.stderr
    for c in ("prod", "staging"):
        assert map_users(stack.get_aws_auth(c)) == []
        assert record(stack.get_aws_auth(c))["tagKey"] == "eks-cluster-admn"


def test_nobody_carrying_the_tag_key_refuses_removals_and_force_overrides(stack):
    names = ["u1", "u2", "u3"]
    grant(stack, names)
    iam = stack.iam()
    for n in names:
        iam.untag_user(UserName=n, TagKeys=[TAG])
    stack.create_user("newcomer")  # untagged: still no principal carries the key
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc != 0 and "no-tagged-principals" in err, err
    prod = cluster_report(report, "prod")
    assert prod["status"] == "guarded" and prod["removed"] == [] and prod["guard"]["count"] == 3
    assert sorted(u["userarn"] for u in map_users(stack.get_aws_auth("prod"))) == sorted(arn(n) for n in names)

    rc, report, err = stack.handle_event(force_payload())
    assert rc == 0, err
    assert sorted(cluster_report(report, "prod")["removed"]) == sorted(arn(n) for n in names)
    assert cluster_report(report, "prod")["guard"]["forced"] is True
    assert map_users(stack.get_aws_auth("prod")) == []


def test_removals_over_the_cap_are_refused_adds_still_applied(stack):
    grant(stack, ["u1", "u2", "u3", "keep"])
    iam = stack.iam()
    for n in ["u1", "u2", "u3"]:
        iam.untag_user(UserName=n, TagKeys=[TAG])
    stack.create_user("new", {TAG: "prod"})
    rc, report, err = stack.handle_event("scheduled.json", {"MAX_REMOVALS": "2"})
    assert rc != 0 and "3 removals exceed MAX_REMOVALS=2" in err, err
    prod = cluster_report(report, "prod")
    assert prod["status"] == "guarded" and prod["added"] == [arn("new")] and prod["removed"] == []
    users = sorted(u["userarn"] for u in map_users(stack.get_aws_auth("prod")))
    assert users == sorted(arn(n) for n in ["u1", "u2", "u3", "keep", "new"])
    # A single-user event is bounded by itself: not capped.
    rc, report, err = stack.handle_event({"action": "reconcile", "users": ["u1", "u2", "u3"]}, {"MAX_REMOVALS": "2"})
    assert rc == 0, err
    assert len(cluster_report(report, "prod")["removed"]) == 3


def test_a_lost_annotation_does_not_silence_revocation(stack):
    grant(stack, ["alice", "bob"])

    # kubectl replace with a manifest that has no annotations (or a GitOps tool re-applying the ConfigMap).
    def drop_annotations(cm):
        cm["metadata"]["annotations"] = {}
    edit(stack, "prod", drop_annotations)
    assert record(stack.get_aws_auth("prod")) is None

    stack.iam().untag_user(UserName="alice", TagKeys=[TAG])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "alice"})
    assert rc == 0, err
    assert cluster_report(report, "prod")["removed"] == [ALICE]
    cm = stack.get_aws_auth("prod")
    assert [u["userarn"] for u in map_users(cm)] == [arn("bob")]
    # The next full run records bob again.
    rc, _, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    assert owned(stack.get_aws_auth("prod")) == [arn("bob")]


def test_a_dropped_mark_fails_loudly_and_changes_nothing(stack):
    grant(stack, ["alice"])

    # A tool that re-renders mapUsers and drops fields it does not know (our mark among them).
    def strip_marks(cm):
        users = map_users(cm)
        for u in users:
            u.pop("eks-admin-sync", None)
        cm["data"]["mapUsers"] = yaml.safe_dump(users)
    edit(stack, "prod", strip_marks)
    before = rv(stack, "prod")
    stack.iam().untag_user(UserName="alice", TagKeys=[TAG])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "alice"})
    assert rc != 0
    assert "ownership unclear" in err and ALICE in err, err
    assert cluster_report(report, "prod")["status"] == "conflict"
    assert rv(stack, "prod") == before, "an unclear entry is never changed"
    # staging still had its mark: revoked there.
    assert cluster_report(report, "staging")["removed"] == [ALICE]


def test_two_deployments_share_a_cluster(stack):
    viewers = {"ADMIN_TAG_KEY": "eks-cluster-viewer", "ADMIN_GROUPS": "viewers", "DEPLOYMENT_ID": "viewers"}
    stack.create_user("alice", {TAG: "true"})
    stack.create_user("vic", {"eks-cluster-viewer": "true"})
    stack.create_user("val", {"eks-cluster-viewer": "staging"})
    versions = []
    for _ in range(3):
        for env in (None, viewers):
            rc, report, err = stack.handle_event("scheduled.json", env)
            assert rc == 0, err
        versions.append(rv(stack, "prod"))
    assert versions[1] == versions[2], "no churn: the two deployments do not undo each other"
    cm = stack.get_aws_auth("prod")
    assert sorted(no_ids(map_users(cm)), key=lambda u: u["userarn"]) == [
        ours(ALICE, "alice"), ours(arn("vic"), "vic", ["viewers"], "viewers", "tag:eks-cluster-viewer")]
    assert len(map_users(stack.get_aws_auth("staging"))) == 3
    assert owned(cm) == [ALICE] and owned(cm, "viewers") == [arn("vic")]
    assert record(cm, "viewers")["tagKey"] == "eks-cluster-viewer"

    # Each revokes only its own.
    stack.iam().untag_user(UserName="vic", TagKeys=["eks-cluster-viewer"])
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0 and cluster_report(report, "prod")["removed"] == [], err
    rc, report, err = stack.handle_event("scheduled.json", viewers)
    assert rc == 0, err
    assert cluster_report(report, "prod")["removed"] == [arn("vic")]
    assert no_ids(map_users(stack.get_aws_auth("prod"))) == [ours(ALICE, "alice")]


def test_a_person_takes_an_entry_over(stack):
    grant(stack, ["alice"])
    # The documented way: change the entry's mark to anything but a deployment id.
    edit(stack, "prod", lambda cm: cm["data"].__setitem__(
        "mapUsers", cm["data"]["mapUsers"].replace("eks-admin-sync: default", "eks-admin-sync: released")))
    stack.iam().untag_user(UserName="alice", TagKeys=[TAG])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "alice"})
    assert rc == 0, err
    assert cluster_report(report, "prod")["removed"] == []
    assert cluster_report(report, "staging")["removed"] == [ALICE]
    cm = stack.get_aws_auth("prod")
    assert no_ids(map_users(cm)) == [ours(ALICE, "alice", deployment="released")]
    assert owned(cm) == [], "forgotten by the function"
    # Tagged again: the person's entry is not taken back.
    stack.iam().tag_user(UserName="alice", Tags=[{"Key": TAG, "Value": "true"}])
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    skipped = cluster_report(report, "prod")["skipped"]
    assert skipped and skipped[0]["kind"] == "foreign", skipped


def test_hand_written_duplicate_of_an_owned_entry_is_left_alone(stack):
    grant(stack, ["alice"])

    def duplicate_and_drift(cm):
        text = cm["data"]["mapUsers"].replace("- system:masters", "- viewers")
        cm["data"]["mapUsers"] = text + f"- userarn: {ALICE}\n  username: alice-by-hand\n  groups: [ops]\n"
    edit(stack, "prod", duplicate_and_drift)
    before = stack.get_aws_auth("prod")
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    prod = cluster_report(report, "prod")
    assert prod["updated"] == [] and prod["skipped"][0]["kind"] == "duplicate", prod
    assert stack.get_aws_auth("prod")["data"]["mapUsers"] == before["data"]["mapUsers"]


def test_audit_record_names_the_actor_and_metrics_are_emf(stack):
    who = f"arn:aws:iam::{ACCOUNT}:user/new-admin-test"
    stack.create_user("new-admin-test", {TAG: "true"})
    rc, report, err = stack.handle_event("tag-user.json")
    assert rc == 0, err
    records = audit_records(err)

    def by_cluster(rs):
        # Clusters are written concurrently, each line the moment its write lands: the order between clusters is
        # the order their writes landed in; within one cluster it is the plan's.
        out = {}
        for r in rs:
            out.setdefault(r["cluster"], []).append(r)
        return out

    assert by_cluster(records) == by_cluster(report["audit"]), "the printed lines are the report's records"
    assert len(records) == len(report["audit"])
    grants = [r for r in records if r["action"] == "grant"]
    assert sorted(r["cluster"] for r in grants) == ["prod", "staging"]
    g = grants[0]
    assert g["principal"] == who and g["username"] == "new-admin-test"
    assert g["groupsBefore"] is None and g["groupsAfter"] == ["system:masters"]
    assert g["applied"] is True and g["dryRun"] is False and g["store"] == "aws-auth"
    t = g["trigger"]
    assert t["kind"] == "cloudtrail" and t["eventName"] == "TagUser"
    assert t["actor"]["arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/PlatformAdmins/jane"
    assert t["actor"]["type"] == "AssumedRole" and t["actor"]["issuerArn"].endswith(":role/PlatformAdmins")
    assert t["eventId"] == "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b" and t["sourceIp"] == "198.51.100.23"

    metrics = metric_lines(err)
    assert sorted(m["Cluster"] for m in metrics) == ["prod", "staging"]
    for m in metrics:
        spec = m["_aws"]["CloudWatchMetrics"]
        assert isinstance(m["_aws"]["Timestamp"], int) and len(spec) == 1
        assert spec[0]["Namespace"] == "EksAdminSync"
        names = [x["Name"] for x in spec[0]["Metrics"]]
        assert names == ["Granted", "Revoked", "Expired", "Updated", "Migrated", "Skipped", "Guarded", "Failed", "Duration"]
        for x in spec[0]["Metrics"]:
            assert isinstance(m[x["Name"]], int) and m[x["Name"]] >= 0
            assert x["Unit"] in ("Count", "Milliseconds")
        for dims in spec[0]["Dimensions"]:
            assert all(isinstance(m[d], str) for d in dims)
        assert (m["Granted"], m["Revoked"], m["Failed"], m["Deployment"]) == (1, 0, 0, "default")


def test_a_hung_cluster_costs_its_deadline_and_the_other_is_written(stack):
    # An API server that accepts connections and never answers.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        with open(os.path.join(stack.dir, "ca.crt")) as f:
            stack.emu("/_emu/eks/hung", {"endpoint": f"https://127.0.0.1:{hung.getsockname()[1]}", "ca_pem": f.read()})
        stack.create_user("alice", {TAG: "true"})
        t0 = time.monotonic()
        rc, report, err = stack.handle_event("scheduled.json", {"CLUSTER_NAMES": "hung prod",
                                                                "CLUSTER_TIMEOUT_SECONDS": "3"})
        elapsed = time.monotonic() - t0
    finally:
        hung.close()
    assert rc != 0
    h = cluster_report(report, "hung")
    assert h["status"] == "failed" and "no answer within 3000 ms" in h["error"], h
    prod = cluster_report(report, "prod")
    assert prod["added"] == [ALICE] and prod["written"]
    # Without the deadline the client's own read timeout (30 s) would decide.
    assert elapsed < 20, elapsed
    print(f"one hung cluster with a 3 s deadline: invocation took {elapsed:.1f}s")


def test_dry_run_from_the_environment_writes_nothing(stack):
    stack.create_user("alice", {TAG: "true"})
    before = {c: rv(stack, c) for c in ("prod", "staging")}
    rc, report, err = stack.handle_event("scheduled.json", {"DRY_RUN": "true"})
    assert rc == 0, err
    assert report["dryRun"] and all(c["added"] == [ALICE] and not c["written"] for c in report["clusters"])
    assert all(r["dryRun"] and not r["applied"] for r in audit_records(err))
    assert {c: rv(stack, c) for c in ("prod", "staging")} == before


def test_iam_errors_other_than_no_such_entity_remove_nothing(stack):
    stack.create_user("new-admin-test", {TAG: "true"})
    rc, _, err = stack.handle_event("tag-user.json")
    assert rc == 0, err
    before = {c: rv(stack, c) for c in ("prod", "staging")}
    for status, code in [(400, "Throttling"), (403, "AccessDenied"), (500, "ServiceFailure")]:
        stack.emu("/_emu/faults", {"label": "iam:GetUser", "status": status, "code": code, "count": -1})
        rc, report, err = stack.handle_event("untag-user.json", {"AWS_MAX_ATTEMPTS": "1"})
        assert rc != 0 and report is None, (code, err)
        assert "GetUser" in err and code in err and "nothing was written" in err, err
        assert {c: rv(stack, c) for c in ("prod", "staging")} == before, code
    stack.emu("/_emu/faults", {})
    # IAM's own NoSuchEntity is the one answer that means "gone".
    stack.delete_user("new-admin-test")
    rc, report, err = stack.handle_event("untag-user.json")
    assert rc == 0, err
    assert all(c["removed"] == [f"arn:aws:iam::{ACCOUNT}:user/new-admin-test"] for c in report["clusters"])



def test_a_recreated_user_behind_the_same_arn_is_a_new_principal(stack):
    """The grant is bound to the IAM user id: a user deleted and re-created under the same name (events
    lost) is revoked and decided afresh, and the audit records say so."""
    stack.create_user("alice", {TAG: "true"})
    rc, _, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    old_id = stack.iam().get_user(UserName="alice")["User"]["UserId"]
    entry = map_users(stack.get_aws_auth("prod"))[0]
    assert entry["eks-admin-sync-user-id"] == old_id

    stack.delete_user("alice")
    stack.create_user("alice", {TAG: "true"})
    new_id = stack.iam().get_user(UserName="alice")["User"]["UserId"]
    assert new_id != old_id
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    prod = cluster_report(report, "prod")
    assert prod["removed"] == [ALICE] and prod["added"] == [ALICE], prod
    records = [r for r in audit_records(err) if r["cluster"] == "prod"]
    revoke = next(r for r in records if r["action"] == "revoke")
    grant_ = next(r for r in records if r["action"] == "grant")
    assert revoke["principalId"] == old_id and grant_["principalId"] == new_id
    assert "another IAM principal now holds this ARN" in revoke["reason"]
    users = map_users(stack.get_aws_auth("prod"))
    assert len(users) == 1 and users[0]["eks-admin-sync-user-id"] == new_id
