"""Every audit record on EventBridge (issue 18): each record of a run is one event on the bus (source
`eks-admin-sync`, detail-type by action, detail = the record), read back here through a rule to an SQS queue
on the emulator; a bus that refuses fails nothing that was written and is reported."""

from stack import ACCOUNT, audit_records, cluster_report, ct_event, map_users, publish_metric_lines

TAG = {"eks-cluster-admin": "true"}


def tag_event(user):
    return ct_event("TagUser", {"userName": user, "tags": [{"key": "eks-cluster-admin", "value": "true"}]})


def test_each_audit_record_is_one_event_on_the_bus(stack):
    q = stack.event_probe()
    for n in ("alice", "bob"):
        stack.create_user(n, TAG)
    stack.reset_calls()
    rc, report, err = stack.run_reconcile()
    assert rc == 0, err
    records = audit_records(err)
    assert len(records) == 4  # two users, two clusters
    events = stack.drain(q)
    assert sorted(e["detail"]["principal"] + e["detail"]["cluster"] for e in events) == \
        sorted(r["principal"] + r["cluster"] for r in records)
    assert {e["source"] for e in events} == {"eks-admin-sync"}
    assert {e["detail-type"] for e in events} == {"EKS admin access granted"}
    assert events[0]["detail"]["audit"] == "eks-admin-sync/v1"
    assert report["events"] == {"bus": "default", "published": 4, "failed": 0}
    # 10 entries a call at most: 4 records take one call.
    assert stack.calls().get("events:PutEvents") == 1
    [m] = publish_metric_lines(err)
    assert (m["EventsPublished"], m["EventsNotPublished"]) == (4, 0)

    # A revoke is announced as such; 23 records take three calls.
    for i in range(11):
        stack.create_user(f"u{i:02d}", TAG)
    stack.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    stack.reset_calls()
    rc, report, err = stack.run_reconcile(extra={"MAX_REMOVALS": "0"})
    assert rc == 0, err
    events = stack.drain(q)
    assert len(events) == len(audit_records(err)) == 24
    assert stack.calls().get("events:PutEvents") == 3
    revoked = [e for e in events if e["detail-type"] == "EKS admin access revoked"]
    assert {e["detail"]["principal"] for e in revoked} == {f"arn:aws:iam::{ACCOUNT}:user/alice"}


def test_entries_that_fail_are_put_again(stack):
    q = stack.event_probe()
    stack.create_user("alice", TAG)
    stack.emu("/_emu/events/fail-entries", {"count": 1})
    stack.reset_calls()
    rc, report, err = stack.run_reconcile()
    assert rc == 0, err
    assert report["events"] == {"bus": "default", "published": 2, "failed": 0}
    assert stack.calls().get("events:PutEvents") == 2
    assert len(stack.drain(q)) == 2


def test_a_bus_that_refuses_fails_nothing_that_was_written(stack):
    stack.create_user("alice", TAG)
    stack.emu("/_emu/faults", {"label": "events:PutEvents", "code": "AccessDeniedException", "status": 400,
                               "message": "not authorized to perform: events:PutEvents"})
    rc, report, err = stack.run_reconcile()
    assert rc == 0, err
    for c in ("prod", "staging"):
        assert cluster_report(report, c)["added"] == [f"arn:aws:iam::{ACCOUNT}:user/alice"]
        assert [u["userarn"] for u in map_users(stack.get_aws_auth(c))] == [f"arn:aws:iam::{ACCOUNT}:user/alice"]
    ev = report["events"]
    assert (ev["published"], ev["failed"]) == (0, 2), ev
    assert any("AccessDeniedException" in e for e in ev["errors"]), ev
    [m] = publish_metric_lines(err)
    assert (m["EventsPublished"], m["EventsNotPublished"]) == (0, 2)
    assert "audit events not published" in err


def test_off_and_dry_run_announce_nothing(stack):
    stack.create_user("alice", TAG)
    stack.reset_calls()
    rc, report, err = stack.run_reconcile(extra={"EVENT_BUS": ""})
    assert rc == 0, err
    assert "events" not in report and "events:PutEvents" not in stack.calls()
    stack.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    rc, report, err = stack.handle_event({"action": "reconcile", "user": "alice", "dryRun": True})
    assert rc == 0, err
    assert [r["action"] for r in audit_records(err)] == ["revoke", "revoke"]
    assert "events" not in report and "events:PutEvents" not in stack.calls()
