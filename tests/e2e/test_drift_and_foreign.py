"""2. Drift is repaired by the scheduled reconcile. 3. Data this function does not own keeps its meaning."""

import json

import yaml

from stack import ACCOUNT, NODE_ROLE, ct_event, map_users, no_ids, owned, ours

ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
GONE = f"arn:aws:iam::{ACCOUNT}:user/gone"


def edit(stack, cluster, fn):
    """A person editing aws-auth by hand (read, change, replace with the resourceVersion read)."""
    cm = stack.get_aws_auth(cluster)
    fn(cm)
    code, body = stack.admin("PUT", cluster, stack.CM, cm)
    assert code == 200, body


def test_scheduled_reconcile_repairs_drift(stack):
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    assert report["clusters"][0]["added"] == [ALICE]

    # Owned entry deleted by hand → restored.
    edit(stack, "prod", lambda cm: cm["data"].__setitem__("mapUsers", "[]\n"))
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
    assert prod["added"] == [ALICE]
    assert [u["userarn"] for u in map_users(stack.get_aws_auth("prod"))] == [ALICE]

    # A stale owned entry (user no longer tagged) and a hand-edited owned entry → both repaired.
    def stale_and_edited(cm):
        users = map_users(cm)
        users[0]["groups"] = ["viewers"]
        users.append({"userarn": GONE, "username": "gone", "groups": ["system:masters"]})
        cm["data"]["mapUsers"] = yaml.safe_dump(users)
        cm["metadata"]["annotations"]["eks-admin-sync/owned-user-arns"] = json.dumps([ALICE, GONE])
    edit(stack, "prod", stale_and_edited)
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
    assert prod["updated"] == [ALICE] and prod["removed"] == [GONE], prod
    cm = stack.get_aws_auth("prod")
    assert no_ids(map_users(cm)) == [ours(ALICE, "alice")]
    assert owned(cm) == [ALICE]

    # Repeated runs do not churn: nothing written, resourceVersion unchanged.
    rv = cm["metadata"]["resourceVersion"]
    rc, report, _ = stack.handle_event("scheduled.json")
    assert rc == 0 and not any(c["written"] for c in report["clusters"])
    assert stack.get_aws_auth("prod")["metadata"]["resourceVersion"] == rv


FOREIGN_USERS = """\
- userARN: arn:aws:iam::123456789012:user/Hand-Written
  UserName: hand
  Groups:
    - system:masters
  userid: AIDAEXAMPLEHAND
  note: "added by jane during the incident, keep"
- userarn: arn:aws:iam::123456789012:user/alice
  username: alice-by-hand
  groups: [viewers]
- userarn: arn:aws:iam::123456789012:user/templated
  username: "{{SessionName}}"
  groups: []
- {}
"""
FOREIGN_ACCOUNTS = '- "111122223333"\n'


def test_foreign_entries_survive_many_operations(stack):
    roles = stack.node_roles_yaml() + (
        "- rolearn: arn:aws:iam::123456789012:role/AWSReservedSSO_Admin_0123456789abcdef\n"
        "  username: sso-admin:{{SessionName}}\n  groups: [system:masters]\n  comment: from terraform\n")
    stack.put_aws_auth("prod", {"mapRoles": roles, "mapAccounts": FOREIGN_ACCOUNTS, "mapUsers": FOREIGN_USERS},
                       annotations={"team": "platform"})
    before = stack.get_aws_auth("prod")

    iam = stack.iam()
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    stack.create_user("bob", {"eks-cluster-admin": "prod"})
    stack.create_user("carol", {"eks-cluster-admin": "prod staging"})
    for ev in ["scheduled.json",
               ct_event("TagUser", {"userName": "bob", "tags": []}),
               ct_event("CreateUser", {"userName": "carol"})]:
        rc, report, err = stack.handle_event(ev)
        assert rc == 0, err
    # moto keys user tags by ARN, so a rename or new path loses them (real IAM keeps them): tag again.
    iam.update_user(UserName="bob", NewUserName="robert")
    iam.tag_user(UserName="robert", Tags=[{"Key": "eks-cluster-admin", "Value": "prod"}])
    rc, report, err = stack.handle_event("update-user-rename.json")
    assert rc == 0, err
    prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
    assert prod["removed"] == [f"arn:aws:iam::{ACCOUNT}:user/bob"], prod
    assert prod["added"] == [f"arn:aws:iam::{ACCOUNT}:user/robert"], prod
    iam.update_user(UserName="carol", NewPath="/platform/")
    iam.tag_user(UserName="carol", Tags=[{"Key": "eks-cluster-admin", "Value": "prod staging"}])
    rc, _, err = stack.handle_event("update-user-path.json")
    assert rc == 0, err
    stack.delete_user("robert")
    rc, _, err = stack.handle_event(ct_event("DeleteUser", {"userName": "robert"}))
    assert rc == 0, err
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err

    after = stack.get_aws_auth("prod")
    # mapRoles, mapAccounts and our neighbours' annotation: byte for byte.
    assert after["data"]["mapRoles"] == before["data"]["mapRoles"]
    assert after["data"]["mapAccounts"] == before["data"]["mapAccounts"]
    assert after["metadata"]["annotations"]["team"] == "platform"
    # Foreign mapUsers entries: same values, same order, alice's hand-made entry not taken over.
    # Foreign: every entry without this deployment's mark.
    foreign = [u for u in map_users(after) if not (isinstance(u, dict) and u.get("eks-admin-sync") == "default")]
    assert foreign == yaml.safe_load(FOREIGN_USERS)
    assert owned(after) == [f"arn:aws:iam::{ACCOUNT}:user/platform/carol"]
    prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
    assert any(s["arn"] == ALICE and "does not own" in s["reason"] for s in prod["skipped"]), prod

    # The node still authenticates as itself, through the untouched node-role mapping.
    token = stack.token_for("prod", stack.node_creds)
    code, review = stack.request("POST", "prod", "/apis/authentication.k8s.io/v1/selfsubjectreviews", token,
                                 {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert code == 201, review
    info = review["status"]["userInfo"]
    assert info["username"].startswith("system:node:ip-"), info
    assert "system:nodes" in info["groups"]
    assert f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}" in info["extra"]["canonicalArn"]


def test_full_reconcile_pages_through_iam(stack):
    """IAM pages GetAccountAuthorizationDetails over users and roles together; with 2 items a page, 5 users and
    the stack's 2 roles (the function's, the node's) take 4 calls and none is lost."""
    stack.emu("/_emu/iam/page-cap", {"cap": 2})
    names = [f"pager{i}" for i in range(5)]
    for n in names:
        stack.create_user(n, {"eks-cluster-admin": "true" if n != "pager3" else "false"})
    stack.reset_calls()
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    calls = stack.calls()
    assert calls.get("iam:GetAccountAuthorizationDetails(MaxItems=1000)") == 4, calls
    assert "iam:GetUser" not in calls and "iam:ListUsers" not in calls, calls
    want = sorted(f"arn:aws:iam::{ACCOUNT}:user/{n}" for n in names if n != "pager3")
    assert sorted(report["clusters"][0]["added"]) == want


HAND_WRITTEN = """\
# Break-glass access. Ask #platform-oncall before editing.
- userarn: arn:aws:iam::123456789012:user/Hand-Written  # Jane, on call
  username: hand
  groups:
  - system:masters

# Contractor, until March
- userarn: arn:aws:iam::123456789012:user/templated
  username: '{{SessionName}}'
  groups: [viewers]
#- userarn: arn:aws:iam::123456789012:user/old-contractor
"""


def test_hand_written_users_text_is_kept_byte_for_byte(stack):
    """mapUsers in the usual hand-written shape is spliced: comments and people's entries never move."""
    stack.put_aws_auth("prod", {"mapRoles": stack.node_roles_yaml(), "mapUsers": HAND_WRITTEN})
    stack.create_user("alice", {"eks-cluster-admin": "prod"})
    rc, report, err = stack.handle_event(ct_event("TagUser", {"userName": "alice", "tags": []}))
    assert rc == 0, err
    text = stack.get_aws_auth("prod")["data"]["mapUsers"]
    assert text.startswith(HAND_WRITTEN), text
    assert no_ids(yaml.safe_load(text[len(HAND_WRITTEN):])) == [ours(ALICE, "alice")]

    # A hand edit of our entry is repaired in place; the text around it does not change.
    edit(stack, "prod", lambda cm: cm["data"].__setitem__(
        "mapUsers", cm["data"]["mapUsers"].replace("system:masters\n", "viewers\n", 2)))
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
    assert prod["updated"] == [ALICE], prod
    # The hand-written entry's group was changed by that edit too (it is not ours): it stays changed.
    expected = HAND_WRITTEN.replace("system:masters\n", "viewers\n")
    assert stack.get_aws_auth("prod")["data"]["mapUsers"].startswith(expected)

    # Untagging removes exactly our entry: the text is the people's text again, byte for byte.
    stack.iam().untag_user(UserName="alice", TagKeys=["eks-cluster-admin"])
    rc, report, err = stack.handle_event(ct_event("UntagUser", {"userName": "alice", "tagKeys": ["eks-cluster-admin"]}))
    assert rc == 0, err
    assert stack.get_aws_auth("prod")["data"]["mapUsers"] == expected


def test_empty_spellings_of_map_users_read_as_empty(stack):
    """`mapUsers: '""'`, two backticks or blanks: EKS reads them as no entries, and so does the function."""
    stack.create_user("alice", {"eks-cluster-admin": "prod"})
    for empty in ['""', "''", "``", "  \n"]:
        stack.put_aws_auth("prod", {"mapRoles": stack.node_roles_yaml(), "mapUsers": empty})
        rc, report, err = stack.handle_event(ct_event("TagUser", {"userName": "alice", "tags": []}))
        assert rc == 0, (empty, err)
        cm = stack.get_aws_auth("prod")
        assert no_ids(map_users(cm)) == [ours(ALICE, "alice")], (empty, cm["data"]["mapUsers"])
        assert cm["data"]["mapRoles"] == stack.node_roles_yaml()


def test_what_we_write_is_what_eks_reads(stack):
    """The local authenticator reads aws-auth with aws-iam-authenticator's own parser (the awsauth-parse helper).
    After grants and a revocation beside hand-written text, that parser reads every mapping as we meant it: no
    error, our users with their groups, the node role and the hand-made entries untouched."""
    from authenticator import parse_aws_auth
    from stack import AWSAUTH_PARSER

    hand = ("# people\n- userARN: arn:aws:iam::123456789012:user/hand  # JSON-ish key case, as EKS allows\n"
            "  username: hand\n  groups: [viewers]\n")
    cm = stack.get_aws_auth("prod")
    stack.put_aws_auth("prod", {**cm["data"], "mapUsers": hand}, cm["metadata"].get("annotations"))
    creds = {n: stack.create_user(n, {"eks-cluster-admin": "true"}) for n in ("alice", "bob")}
    rc, _, err = stack.run_reconcile()
    assert rc == 0, err
    stack.iam().untag_user(UserName="bob", TagKeys=["eks-cluster-admin"])
    rc, _, err = stack.handle_event({"action": "reconcile", "user": "bob"})
    assert rc == 0, err
    parsed = parse_aws_auth(AWSAUTH_PARSER, stack.get_aws_auth("prod")["data"])
    assert "error" not in parsed, parsed
    users = {u["userarn"]: (u["username"], u["groups"]) for u in parsed["users"]}
    assert users == {f"arn:aws:iam::{ACCOUNT}:user/hand": ("hand", ["viewers"]),
                     f"arn:aws:iam::{ACCOUNT}:user/alice": ("alice", ["system:masters"])}, users
    roles = {r["rolearn"]: (r["username"], r["groups"]) for r in parsed["roles"]}
    assert roles[f"arn:aws:iam::{ACCOUNT}:role/{NODE_ROLE}"] == (
        "system:node:{{EC2PrivateDNSName}}", ["system:bootstrappers", "system:nodes"]), roles
    # And the parser is what the authenticator goes by: a block it cannot read grants nobody, as in EKS.
    assert stack.kubectl_as("prod", creds["alice"], ["get", "ns"]).returncode == 0
    cm = stack.get_aws_auth("prod")
    stack.put_aws_auth("prod", {**cm["data"], "mapUsers": cm["data"]["mapUsers"] + "- userarn: [unclosed\n"},
                       cm["metadata"].get("annotations"))
    assert "error" in parse_aws_auth(AWSAUTH_PARSER, stack.get_aws_auth("prod")["data"])
    stack.ran()  # a token signed after the edit
    assert stack.kubectl_as("prod", creds["alice"], ["get", "ns"]).returncode != 0
