"""Issue 24, end to end: the function grants an admin group's member only under the path the policies protect
(IAM conditions cannot see group membership, so `infra/policies` protect the members by their path, and the
function agrees), on the three clusters of `st`."""

from stack import ACCOUNT, THREE_MODES, cluster_report, ct_event

MODES = THREE_MODES
ENV = {"ADMIN_IAM_GROUPS": "platform-admins"}


def can_admin(st, cluster, creds):
    return st.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def test_a_member_outside_the_protected_path_is_no_admin_until_moved_there(st):
    iam = st.iam()
    iam.create_group(GroupName="platform-admins")
    erin = st.create_user("erin")  # at /: the policies would not protect her
    iam.add_user_to_group(GroupName="platform-admins", UserName="erin")
    rc, report, err = st.run_reconcile(extra=ENV)
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["added"] == [], report
        assert not can_admin(st, c, erin), c
    note = next(n for n in report["notes"] if "erin" in n)
    assert "not under /eks-admins/" in note and "--new-path /eks-admins/" in note, note

    # The platform moves her under the path; the UpdateUser event grants her.
    iam.update_user(UserName="erin", NewPath="/eks-admins/")
    rc, report, err = st.handle_event(ct_event("UpdateUser", {"userName": "erin", "newPath": "/eks-admins/"}), ENV)
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["added"] == [f"arn:aws:iam::{ACCOUNT}:user/eks-admins/erin"], report
        assert can_admin(st, c, erin), c

    # "/" lets every member in (documented as unprotected by the shipped policies).
    st.create_user("fred")
    iam.add_user_to_group(GroupName="platform-admins", UserName="fred")
    rc, report, err = st.run_reconcile(extra={**ENV, "ADMIN_GROUP_MEMBER_PATH": "/"})
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["added"] == [f"arn:aws:iam::{ACCOUNT}:user/fred"], report
