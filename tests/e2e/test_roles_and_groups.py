"""Admins beyond IAM users, end to end: tagged IAM roles, IAM Identity Center permission-set roles and members
of IAM groups, on the three clusters of `st` (cm: CONFIG_MAP, mixed: API_AND_CONFIG_MAP, api: API).

People reach the clusters as EKS sees them: an assumed-role session signs an `eks-admin-sync token`, the local
authenticator canonicalises the session to `role/NAME` (path dropped) for aws-auth, as aws-iam-authenticator
does, and matches access entries by the role's id, as EKS does. aws-auth is read through aws-iam-authenticator's
own parser.
"""

import yaml

from stack import (ACCOUNT, NODE_ROLE, THREE_MODES, audit_records, cluster_report, ct_event, force_payload,
                   metric_lines)

MODES = THREE_MODES
TAG = {"eks-cluster-admin": "true"}
GROUP_MARK = "eks-admin-sync:default"


def can_admin(st, cluster, creds):
    return st.kubectl_as(cluster, creds, ["get", "all", "-A"]).returncode == 0


def node_authenticates(st, cluster):
    who = st.kubectl_as(cluster, st.node_creds, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
    return who.returncode == 0 and who.stdout.startswith("system:node:ip-")


def seed_node_entries(st):
    node = f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"
    for c in ("mixed", "api"):
        st.eks().create_access_entry(clusterName=c, principalArn=node, type="EC2_LINUX")


def role_event(name, role, **extra):
    return ct_event(name, {"roleName": role, **extra})


def map_roles(cm):
    return yaml.safe_load((cm.get("data") or {}).get("mapRoles") or "[]") or []


def ours_in_map_roles(st, cluster):
    return [r for r in map_roles(st.get_aws_auth(cluster)) if r.get("eks-admin-sync") == "default"]


def test_a_tagged_role_under_a_path_is_admin_on_every_mode_and_untag_revokes(st):
    seed_node_entries(st)
    arn = st.create_role("team-admin", TAG, path="/team/")
    role_id = st.iam().get_role(RoleName="team-admin")["Role"]["RoleId"]
    before = st.get_aws_auth("cm")["data"]["mapRoles"]
    session = st.assume(arn, "jane")
    assert not any(can_admin(st, c, session) for c in MODES)

    st.reset_calls()
    rc, report, err = st.handle_event(role_event("TagRole", "team-admin", tags=[{"key": "eks-cluster-admin",
                                                                                  "value": "true"}]))
    assert rc == 0, err
    iam_calls = {k: v for k, v in st.calls().items() if k.startswith("iam:")}
    assert iam_calls == {"iam:GetRole": 1}, iam_calls  # one role event: one IAM call
    bare = f"arn:aws:iam::{ACCOUNT}:role/team-admin"
    assert cluster_report(report, "cm")["added"] == [bare]
    for c in ("mixed", "api"):
        assert cluster_report(report, c)["added"] == [arn]
    for c in MODES:
        assert can_admin(st, c, session), c
    # aws-auth: the path-less ARN, appended after the node rows, which stay byte for byte.
    after = st.get_aws_auth("cm")["data"]["mapRoles"]
    assert after.startswith(before), after
    [row] = ours_in_map_roles(st, "cm")
    assert row["rolearn"] == bare
    assert row["username"] == "team-admin:{{SessionName}}"
    assert row["eks-admin-sync-user-id"] == role_id
    # Access entries: the full ARN, bound to the role's id.
    for c in ("mixed", "api"):
        e = st.entries(c)[arn]
        assert e["username"] == "team-admin:{{SessionName}}" and e["kubernetesGroups"] == [GROUP_MARK]
        assert e["tags"]["eks-admin-sync-user-id"] == role_id
    # Whoever the session is shows up in Kubernetes' audit trail as the role plus the session name.
    who = st.kubectl_as("cm", session, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
    assert who.stdout == "team-admin:jane", who
    records = [r for r in audit_records(err) if r["action"] == "grant"]
    assert {r["principalKind"] for r in records} == {"role"}
    assert {r["source"] for r in records} == {"tag:eks-cluster-admin"}
    assert {r["principal"] for r in records} == {arn, bare}

    st.iam().untag_role(RoleName="team-admin", TagKeys=["eks-cluster-admin"])
    rc, report, err = st.handle_event(role_event("UntagRole", "team-admin", tagKeys=["eks-cluster-admin"]))
    assert rc == 0, err
    for c in MODES:
        assert not can_admin(st, c, session), c
        assert node_authenticates(st, c), c
    assert st.get_aws_auth("cm")["data"]["mapRoles"] == before
    assert {r["action"] for r in audit_records(err)} == {"revoke"}
    assert {r["principalKind"] for r in audit_records(err)} == {"role"}
    assert {m["Cluster"]: m["Revoked"] for m in metric_lines(err)} == {c: 1 for c in MODES}


def test_delete_role_removes_the_grant_at_once_and_a_recreated_role_gets_a_fresh_entry(st):
    arn = st.create_role("ops", TAG, path="/team/")
    rc, _, err = st.handle_event(ct_event("CreateRole", {"roleName": "ops", "path": "/team/",
                                                        "tags": [{"key": "eks-cluster-admin", "value": "true"}]}))
    assert rc == 0, err
    old_session = st.assume(arn, "jane")
    assert all(can_admin(st, c, old_session) for c in MODES)

    st.delete_role("ops")
    rc, report, err = st.handle_event(role_event("DeleteRole", "ops"))
    assert rc == 0, err
    for c in ("mixed", "api"):
        assert cluster_report(report, c)["removed"] == [arn], report
        assert arn not in st.entries(c)
    assert ours_in_map_roles(st, "cm") == []

    # Re-created under the same name (a new id): the entry of the old one would not let it in, so the function
    # makes a fresh one.
    arn2 = st.create_role("ops", TAG, path="/team/")
    assert arn2 == arn
    rc, report, err = st.handle_event(ct_event("CreateRole", {"roleName": "ops", "path": "/team/"}))
    assert rc == 0, err
    new_id = st.iam().get_role(RoleName="ops")["Role"]["RoleId"]
    session = st.assume(arn, "jane")
    for c in MODES:
        assert can_admin(st, c, session), c
    for c in ("mixed", "api"):
        assert st.entries(c)[arn]["tags"]["eks-admin-sync-user-id"] == new_id


def test_recreated_role_with_a_stale_entry_is_a_replacement(st):
    """The role is deleted and re-created with no event in between (missed, or late): the next run finds our
    entry bound to the old id and replaces it as one change."""
    arn = st.create_role("ops", TAG)
    rc, _, err = st.run_reconcile()
    assert rc == 0, err
    old_id = st.entries("api")[arn]["tags"]["eks-admin-sync-user-id"]
    st.delete_role("ops")
    st.create_role("ops", TAG)
    session = st.assume(arn, "sam")
    assert not can_admin(st, "api", session), "EKS binds the entry to the old role's id"
    rc, report, err = st.run_reconcile(extra={"MAX_REMOVALS": "1"})
    assert rc == 0, err
    for c in ("mixed", "api"):
        assert st.entries(c)[arn]["tags"]["eks-admin-sync-user-id"] != old_id
        assert cluster_report(report, c).get("guard") is None
    for c in MODES:
        assert can_admin(st, c, session), c


def test_never_admins_the_node_role_a_service_linked_role_or_the_function_itself(st):
    # api: the node's EC2_LINUX entry; mixed: mid-migration, the nodes still sign in through aws-auth's node
    # row only (the case where nothing else would stop a STANDARD admin entry for the node role).
    st.eks().create_access_entry(clusterName="api", principalArn=f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}",
                                 type="EC2_LINUX")
    iam = st.iam()
    iam.tag_role(RoleName=NODE_ROLE, Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
    iam.tag_role(RoleName="eks-admin-sync-fn", Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
    before_roles = st.get_aws_auth("cm")["data"]["mapRoles"]
    entries_before = {c: st.entries(c) for c in ("mixed", "api")}
    rc, report, err = st.run_reconcile()
    assert rc == 0, err
    for c in MODES:
        r = cluster_report(report, c)
        assert r["added"] == [], r
        kinds = {s["arn"]: s["kind"] for s in r["skipped"]}
        assert kinds == {f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}": "node-role"}, r
    assert any("own role" in n for n in report["notes"]), report["notes"]
    assert st.get_aws_auth("cm")["data"]["mapRoles"] == before_roles
    for c in ("mixed", "api"):
        assert st.entries(c) == entries_before[c]
        assert node_authenticates(st, c)


def test_permission_set_roles_are_admins_by_name_and_follow_a_new_suffix(st):
    env = {"ADMIN_PERMISSION_SETS": "Platform_Admin"}
    admin_eu = st.sso_role("Platform_Admin", "0123456789abcdef", region="eu-west-1")
    admin_us = st.sso_role("Platform_Admin", "fedcba9876543210")  # us-east-1 instance: no region segment
    other = st.sso_role("ReadOnly", "00112233445566aa")
    assert "/aws-reserved/sso.amazonaws.com/eu-west-1/" in admin_eu
    assert ":role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_" in admin_us
    # Nobody may tag these roles: AWS refuses it, so names are the only way to pick them.
    try:
        st.iam().tag_role(RoleName=other.rsplit("/", 1)[-1], Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
        raise AssertionError("tagging an Identity Center role must be refused")
    except st.iam().exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "UnmodifiableEntity", e.response

    rc, report, err = st.run_reconcile(extra=env)
    assert rc == 0, err
    for c in ("mixed", "api"):
        assert sorted(cluster_report(report, c)["added"]) == sorted([admin_eu, admin_us]), report
    person = st.assume(admin_eu, "jane@example.com")
    reader = st.assume(other, "joe@example.com")
    for c in MODES:
        assert can_admin(st, c, person), c
        assert not can_admin(st, c, reader), c
    who = st.kubectl_as("api", person, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
    assert who.stdout == "AWSReservedSSO_Platform_Admin_0123456789abcdef:jane-example.com", who
    records = [r for r in audit_records(err) if r["action"] == "grant"]
    assert {r["source"] for r in records} == {"permission-set:Platform_Admin"}

    # Every assignment removed: Identity Center deletes the role; a later assignment makes a new suffix.
    st.delete_sso_role(admin_eu.rsplit("/", 1)[-1])
    rc, report, err = st.handle_event(role_event("DeleteRole", admin_eu.rsplit("/", 1)[-1]), env)
    assert rc == 0, err
    for c in ("mixed", "api"):
        assert cluster_report(report, c)["removed"] == [admin_eu]
    renewed = st.sso_role("Platform_Admin", "99887766554433bb", region="eu-west-1")
    rc, report, err = st.handle_event(role_event("CreateRole", renewed.rsplit("/", 1)[-1],
                                                 path="/aws-reserved/sso.amazonaws.com/eu-west-1/"), env)
    assert rc == 0, err
    for c in ("mixed", "api"):
        assert cluster_report(report, c)["added"] == [renewed]
    assert all(can_admin(st, c, st.assume(renewed, "jane@example.com")) for c in MODES)


def test_a_permission_set_with_no_role_removes_nothing(st):
    env = {"ADMIN_PERMISSION_SETS": "Platform_Admin"}
    arn = st.sso_role("Platform_Admin", "0123456789abcdef")
    st.create_user("tagged", TAG)
    rc, _, err = st.run_reconcile(extra=env)
    assert rc == 0, err
    person = st.assume(arn, "jane")
    # A typo in the setting: the named set has no role, so the grants it made stay and the run says why.
    rc, report, err = st.run_reconcile(extra={"ADMIN_PERMISSION_SETS": "Platfrom_Admin"})
    assert rc != 0
    for c in MODES:
        r = cluster_report(report, c)
        assert r["status"] == "guarded" and r["guard"]["rule"] == "source-yields-nobody", r
        assert "permission-set:Platfrom_Admin" in r["guard"]["message"]
        assert can_admin(st, c, person), c
    assert any(r["action"] == "guard" for r in audit_records(err))


def test_group_members_are_admins_on_the_membership_events(st):
    env = {"ADMIN_IAM_GROUPS": "platform-admins"}
    iam = st.iam()
    iam.create_group(GroupName="platform-admins")
    # Admin-group members live under the path the policies protect (ADMIN_GROUP_MEMBER_PATH).
    dave = st.create_user("dave", path="/eks-admins/")
    dave_arn = f"arn:aws:iam::{ACCOUNT}:user/eks-admins/dave"
    iam.add_user_to_group(GroupName="platform-admins", UserName="dave")
    st.reset_calls()
    rc, report, err = st.handle_event("add-user-to-group.json", env)
    assert rc == 0, err
    calls = st.calls()
    iam_calls = sum(v for k, v in calls.items() if k.startswith("iam:"))
    assert iam_calls == 2, calls  # GetUser, then one ListGroupsForUser
    for c in MODES:
        assert cluster_report(report, c)["added"] == [dave_arn], report
        assert can_admin(st, c, dave), c
    records = [r for r in audit_records(err) if r["action"] == "grant"]
    assert {r["source"] for r in records} == {"iam-group:platform-admins"}
    assert {r["principalKind"] for r in records} == {"user"}
    assert {m["Cluster"]: m["Granted"] for m in metric_lines(err)} == {c: 1 for c in MODES}

    iam.remove_user_from_group(GroupName="platform-admins", UserName="dave")
    rc, report, err = st.handle_event("remove-user-from-group.json", env)
    assert rc == 0, err
    for c in MODES:
        assert cluster_report(report, c)["removed"] == [dave_arn]
        assert not can_admin(st, c, dave), c


def test_a_typo_in_admin_iam_groups_removes_nothing_and_names_the_rule(st):
    iam = st.iam()
    iam.create_group(GroupName="platform-admins")
    dave = st.create_user("dave", path="/eks-admins/")
    iam.add_user_to_group(GroupName="platform-admins", UserName="dave")
    # Someone carries the tag, so the tag source is not empty: only the group rule can hold the removal.
    st.create_user("tagged", TAG)
    rc, _, err = st.run_reconcile(extra={"ADMIN_IAM_GROUPS": "platform-admins"})
    assert rc == 0, err
    rc, report, err = st.run_reconcile(extra={"ADMIN_IAM_GROUPS": "platfrom-admins"})
    assert rc != 0, err
    for c in MODES:
        r = cluster_report(report, c)
        assert r["status"] == "guarded", r
        assert r["guard"]["rule"] == "source-yields-nobody", r
        assert "iam-group:platfrom-admins" in r["guard"]["message"]
        assert r["removed"] == []
        assert can_admin(st, c, dave), c
    assert "source-yields-nobody" in err
    assert {m["Cluster"]: m["Guarded"] for m in metric_lines(err)} == {c: 1 for c in MODES}
    guards = [r for r in audit_records(err) if r["action"] == "guard"]
    assert {(r["principal"], r["principalKind"]) for r in guards} == {(f"arn:aws:iam::{ACCOUNT}:user/eks-admins/dave", "user")}


def test_renaming_an_admin_group_is_a_full_reconcile(st):
    env = {"ADMIN_IAM_GROUPS": "platform-admins"}
    iam = st.iam()
    iam.create_group(GroupName="platform-admins")
    dave = st.create_user("dave", path="/eks-admins/")
    iam.add_user_to_group(GroupName="platform-admins", UserName="dave")
    st.create_user("tagged", TAG)
    rc, _, err = st.run_reconcile(extra=env)
    assert rc == 0, err
    iam.update_group(GroupName="platform-admins", NewGroupName="platform-admins-old")
    rc, report, err = st.handle_event("update-group-rename.json", env)
    # The group now has no name the setting knows: the guard keeps the grants and says so.
    assert rc != 0
    assert cluster_report(report, "api")["guard"]["rule"] == "source-yields-nobody"
    assert can_admin(st, "api", dave)
    # With the rename made on purpose, `force` lets the revocation through.
    rc, report, err = st.handle_event(force_payload(), env)
    assert rc == 0, err
    for c in MODES:
        assert not can_admin(st, c, dave), c
