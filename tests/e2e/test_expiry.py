"""Grants that expire on their own (issue 18), end to end on the three clusters of `st` (one per EKS
authentication mode): the expiry tag (`ADMIN_EXPIRY_TAG_KEY`, default `eks-cluster-admin-expires`) holds an
RFC 3339 UTC time; until then the principal is an admin, from then on it is not, and the run that sees the
expiry revokes with the audit action `expire`."""

import datetime as dt
import time

from stack import ACCOUNT, THREE_MODES, audit_records, cluster_report, ct_event, metric_lines

MODES = THREE_MODES
EXPIRES = "eks-cluster-admin-expires"


def at(seconds):
    t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def can_admin(st, cluster, creds):
    return st.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def tag_event(user, tags):
    return ct_event("TagUser", {"userName": user, "tags": [{"key": k, "value": v} for k, v in tags.items()]})


def test_a_grant_until_a_time_is_revoked_as_an_expiry(st):
    until = at(6)
    tags = {"eks-cluster-admin": "true", EXPIRES: until}
    alice = st.create_user("alice", tags)
    arn = f"arn:aws:iam::{ACCOUNT}:user/alice"
    rc, report, err = st.handle_event(tag_event("alice", tags))
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["added"] == [arn]
        assert can_admin(st, c, alice), c
    grants = [r for r in audit_records(err) if r["action"] == "grant"]
    assert len(grants) == 3
    # Wait past the expiry (the function reads the time; there is nothing to fake).
    time.sleep(max(0.0, dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp() - time.time()) + 1)
    rc, report, err = st.handle_event("scheduled.json")
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["removed"] == [arn], report
        assert not can_admin(st, c, alice), c
    records = audit_records(err)
    assert {r["action"] for r in records} == {"expire"}, records
    assert all("expiry" in r["reason"] for r in records)
    assert {m["Cluster"]: (m["Expired"], m["Revoked"]) for m in metric_lines(err)} == {c: (1, 0) for c in MODES}
    assert any("expired at " + until in n for n in report["notes"]), report["notes"]

    # A new expiry grants again.
    tags[EXPIRES] = at(3600)
    st.iam().tag_user(UserName="alice", Tags=[{"Key": EXPIRES, "Value": tags[EXPIRES]}])
    rc, report, err = st.handle_event(tag_event("alice", {EXPIRES: tags[EXPIRES]}))
    assert rc == 0, err
    for c in MODES:
        assert can_admin(st, c, alice), c


def test_past_unparseable_or_too_far_never_grants(st):
    cases = {"past": at(-60), "words": "tonight", "offset": "2026-12-02T18:00:00+01:00", "far": at(48 * 3600)}
    for name, value in cases.items():
        st.create_user(name, {"eks-cluster-admin": "true", EXPIRES: value})
    st.create_user("forever", {"eks-cluster-admin": "true"})
    rc, report, err = st.run_reconcile(extra={"MAX_GRANT_HOURS": "24"})
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["added"] == [], report
    notes = "\n".join(report["notes"])
    assert "user past" in notes and "expired at" in notes
    assert "user words" in notes and "not an RFC 3339 UTC time" in notes
    assert "user offset" in notes
    assert "user far" in notes and "MAX_GRANT_HOURS=24" in notes
    assert "user forever" in notes and "requires every grant to expire" in notes
    # Without the cap, the grant without an expiry and the far one are fine; the others still are not.
    rc, report, err = st.run_reconcile()
    assert rc == 0, err
    for c in MODES:
        assert sorted(cluster_report(report, c)["added"]) == [f"arn:aws:iam::{ACCOUNT}:user/far",
                                                             f"arn:aws:iam::{ACCOUNT}:user/forever"]


WAKEUP = {"EXPIRY_SCHEDULE_GROUP": "eks-admin-sync", "EXPIRY_SCHEDULE_NAME": "eks-admin-sync-default-expiry",
          "EXPIRY_SCHEDULE_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/eks-admin-sync-expiry-invoker",
          "EXPIRY_SCHEDULE_TARGET_ARN": f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:eks-admin-sync"}


def schedule(st):
    s = st.aws("scheduler")
    try:
        return s.get_schedule(GroupName=WAKEUP["EXPIRY_SCHEDULE_GROUP"], Name=WAKEUP["EXPIRY_SCHEDULE_NAME"])
    except s.exceptions.ResourceNotFoundException:
        return None


def wake_at(expiry):
    """The wake-up of an expiry: the first whole minute after it (EventBridge Scheduler runs a schedule
    anywhere within its minute: "set to run at 1:00, it invokes between 1:00:00 and 1:00:59", Scheduler user
    guide, "Schedule types")."""
    t = dt.datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(second=0) + dt.timedelta(minutes=1)
    return f"at({t.strftime('%Y-%m-%dT%H:%M:%S')})"


def earliest_run(expression):
    """The earliest moment Scheduler may invoke a one-time schedule: the start of its minute."""
    t = dt.datetime.strptime(expression[3:-1], "%Y-%m-%dT%H:%M:%S").replace(second=0, tzinfo=dt.timezone.utc)
    return t.timestamp()


def mid_minute(seconds):
    """A time at least `seconds` from now whose seconds are between 10 and 50: a wake-up a few seconds after
    it (at(T+2s), say) would share its minute, and Scheduler could run it before T."""
    t = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=seconds)
    if t.second < 10:
        t = t.replace(second=10)
    elif t.second > 50:
        t = t.replace(second=10) + dt.timedelta(minutes=1)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_wakeup_revokes_at_the_expiry_not_at_the_next_schedule(st):
    s = st.aws("scheduler")
    try:
        s.create_schedule_group(Name=WAKEUP["EXPIRY_SCHEDULE_GROUP"])
    except s.exceptions.ConflictException:
        pass
    if schedule(st):
        s.delete_schedule(GroupName=WAKEUP["EXPIRY_SCHEDULE_GROUP"], Name=WAKEUP["EXPIRY_SCHEDULE_NAME"])
    soon, later = mid_minute(8), at(180)
    alice = st.create_user("alice", {"eks-cluster-admin": "true", EXPIRES: soon})
    rc, report, err = st.handle_event(tag_event("alice", {EXPIRES: soon}), WAKEUP)
    assert rc == 0, err
    assert report["nextExpiry"] == soon
    assert report["wakeup"]["change"] == "created", report["wakeup"]
    sch = schedule(st)
    assert sch["ScheduleExpressionTimezone"] == "UTC"
    assert sch["Target"]["Arn"] == WAKEUP["EXPIRY_SCHEDULE_TARGET_ARN"]
    assert sch["Target"]["RoleArn"] == WAKEUP["EXPIRY_SCHEDULE_ROLE_ARN"]
    assert all(can_admin(st, c, alice) for c in MODES)

    # A later expiry on an event leaves the earlier wake-up alone (that run sets the next one).
    st.create_user("bob", {"eks-cluster-admin": "true", EXPIRES: later})
    rc, report, err = st.handle_event(tag_event("bob", {EXPIRES: later}), WAKEUP)
    assert rc == 0, err
    assert report["wakeup"]["change"] == "unchanged"
    assert schedule(st)["ScheduleExpression"] == sch["ScheduleExpression"]

    # Invoked as EventBridge Scheduler invokes it, at the earliest moment its precision allows (the start of
    # the schedule's minute) and with the schedule's own input: the run finds the expiry passed.
    time.sleep(max(0.0, earliest_run(sch["ScheduleExpression"]) - time.time()))
    rc, report, err = st.handle_event(sch["Target"]["Input"], WAKEUP)
    assert rc == 0, err
    assert report["trigger"]["kind"] == "expiry"
    for c in MODES:
        assert cluster_report(report, c)["removed"] == [f"arn:aws:iam::{ACCOUNT}:user/alice"], report
        assert not can_admin(st, c, alice), c
    assert {r["action"] for r in audit_records(err)} == {"expire"}
    # It was set at the first whole minute after the expiry (so that it never runs before it).
    assert sch["ScheduleExpression"] == wake_at(soon)
    # The wake-up moves to the next expiry; with none left, a full reconcile deletes it.
    assert report["wakeup"] == {"schedule": "eks-admin-sync/eks-admin-sync-default-expiry", "change": "updated",
                                "at": wake_at(later)}
    st.iam().untag_user(UserName="bob", TagKeys=[EXPIRES])
    rc, report, err = st.run_reconcile(extra=WAKEUP)
    assert rc == 0, err
    assert report["wakeup"]["change"] == "deleted" and schedule(st) is None


def test_a_scheduler_that_refuses_fails_nothing_that_was_written(st):
    # No schedule group: EventBridge Scheduler answers ResourceNotFoundException; the grant still lands.
    env = {**WAKEUP, "EXPIRY_SCHEDULE_GROUP": "missing-group"}
    until = at(3600)
    alice = st.create_user("alice", {"eks-cluster-admin": "true", EXPIRES: until})
    rc, report, err = st.handle_event(tag_event("alice", {EXPIRES: until}), env)
    assert rc == 0, err
    assert "ResourceNotFoundException" in report["wakeup"]["error"], report["wakeup"]
    assert all(can_admin(st, c, alice) for c in MODES)
    assert "could not keep the expiry wake-up" in err


def test_expiries_count_toward_max_removals(st):
    """A clock or parsing bug must not become a removal spree: expiries are removals for the guard."""
    until = at(5)
    people = {n: st.create_user(n, {"eks-cluster-admin": "true", EXPIRES: until}) for n in ("ann", "ben")}
    st.create_user("keeper", {"eks-cluster-admin": "true"})
    rc, _, err = st.run_reconcile()
    assert rc == 0, err
    time.sleep(max(0.0, dt.datetime.strptime(until, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.timezone.utc).timestamp() - time.time()) + 1)
    rc, report, err = st.run_reconcile(extra={"MAX_REMOVALS": "1"})
    assert rc != 0
    for c in MODES:
        r = cluster_report(report, c)
        assert r["status"] == "guarded" and r["guard"]["rule"] == "max-removals", r
        assert all(can_admin(st, c, creds) for creds in people.values()), c
    rc, report, err = st.run_reconcile(extra={"MAX_REMOVALS": "1"}, force=True)
    assert rc == 0, err
    assert {r["action"] for r in audit_records(err)} == {"expire"}
