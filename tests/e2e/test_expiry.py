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
