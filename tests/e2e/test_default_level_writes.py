"""The default level writes exactly what the function wrote before grants were made of levels (issue 25).

`golden/default-level-writes.json` holds, step by step, what a scenario on the three authentication modes
wrote: each cluster's access-entry writes, in order per principal (the emulator's write log), the function's Kubernetes writes
(the API server's audit log), and then each cluster's `aws-auth` and access entries as they stand. It was
recorded with the binary of commit 15c1a31 (main before levels), by

    GOLDEN_WRITE=1 EKS_ADMIN_SYNC_BIN=<that binary> python -m pytest tests/e2e/test_default_level_writes.py

and this test runs today's binary through the same steps and compares. Only what differs from run to run is
left out: IAM's random unique ids (a user's id in its entry tags and `aws-auth` row), entry ARNs' suffixes and
timestamps. Regenerate it only from a binary whose writes are the reference.
"""

import json
import os

from stack import THREE_MODES, ct_event, record

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "default-level-writes.json")
CLUSTERS = list(THREE_MODES)
# Every kind of source, two Kubernetes groups (one EKS refuses on an entry), a namespace-scoped policy.
SETTINGS = {
    "ADMIN_GROUPS": "system:masters ops",
    "ADMIN_PERMISSION_SETS": "PlatformAdmin",
    "ADMIN_IAM_GROUPS": "eks-admins",
    "ACCESS_POLICIES": "AmazonEKSClusterAdminPolicy, AmazonEKSViewPolicy=team-b team-a",
}
RANDOM_TAGS = {"eks-admin-sync-user-id"}


def rows(cm, key):
    import yaml

    text = (cm.get("data") or {}).get(key) or "[]"
    out = []
    for r in yaml.safe_load(text) or []:
        out.append({k: v for k, v in r.items() if k not in RANDOM_TAGS})
    return out


def entry(e):
    return {"type": e["type"], "username": e.get("username"), "kubernetesGroups": sorted(e.get("kubernetesGroups") or []),
            "policies": e["policies"], "tags": {k: v for k, v in (e.get("tags") or {}).items() if k not in RANDOM_TAGS}}


def entry_writes(writes):
    """Each principal's access-entry writes in order. The function writes up to 16 principals at a time, so
    the order between principals is not a property of the writes; within one it is (create, then associate)."""
    out = {}
    for action, principal in writes:
        out.setdefault(principal, []).append(action)
    return dict(sorted(out.items()))


def kube_writes(st, cluster, seen):
    """The function's Kubernetes writes on `cluster` since the last step (the audit log only grows)."""
    reqs = st.function_requests(cluster)
    new, seen[cluster] = reqs[seen.get(cluster, 0):], len(reqs)
    return [[verb, resource, name, code] for verb, resource, name, code in new if verb not in ("get", "list", "watch")]


def state(st, seen):
    out = {}
    for c in CLUSTERS:
        cm = st.get_aws_auth(c)
        out[c] = {
            "entryWrites": entry_writes(st.writes(c)),
            "kubeWrites": kube_writes(st, c, seen),
            "mapUsers": rows(cm, "mapUsers"),
            "mapRoles": rows(cm, "mapRoles"),
            "record": record(cm),
            "entries": {arn: entry(e) for arn, e in sorted(st.entries(c).items())} if THREE_MODES[c] != "CONFIG_MAP" else {},
        }
    return out


def outcome(rc, report):
    """What the run said, per cluster: its status and the ARNs added, updated and removed."""
    if report is None:
        return {"rc": rc}
    return {"rc": rc, "clusters": {c["cluster"]: {k: c.get(k) for k in ("status", "added", "updated", "removed")}
                                   for c in report["clusters"]}}


def scenario(st):
    """Yields (step name, the run's outcome) after each change and the run that follows it."""
    env = dict(SETTINGS)
    st.create_user("alice", {"eks-cluster-admin": "true"})
    st.create_user("bob", {"eks-cluster-admin": "cm api"})
    st.create_user("dave", {"eks-cluster-admin": "true", "eks-cluster-admin-expires": "2099-01-01T00:00:00Z"})
    st.create_user("carol", path="/eks-admins/")
    iam = st.iam()
    iam.create_group(GroupName="eks-admins")
    iam.add_user_to_group(GroupName="eks-admins", UserName="carol")
    st.create_role("team-admin", {"eks-cluster-admin": "true"}, path="/team/")
    st.sso_role("PlatformAdmin", "0123456789abcdef")
    rc, report, _ = st.run_reconcile(extra=env)
    yield "first full reconcile", outcome(rc, report)

    iam.untag_user(UserName="bob", TagKeys=["eks-cluster-admin"])
    rc, report, _ = st.handle_event(ct_event("UntagUser", {"userName": "bob", "tagKeys": ["eks-cluster-admin"]}), env)
    yield "bob untagged (event)", outcome(rc, report)

    iam.tag_user(UserName="alice", Tags=[{"Key": "eks-cluster-admin-expires", "Value": "2020-01-01T00:00:00Z"}])
    rc, report, _ = st.run_reconcile(extra=env)
    yield "alice's grant expired (full reconcile)", outcome(rc, report)

    iam.remove_user_from_group(GroupName="eks-admins", UserName="carol")
    rc, report, _ = st.handle_event(ct_event("RemoveUserFromGroup", {"groupName": "eks-admins", "userName": "carol"}),
                                    env)
    yield "carol left the group (event)", outcome(rc, report)

    iam.tag_role(RoleName="team-admin", Tags=[{"Key": "eks-cluster-admin", "Value": "mixed"}])
    rc, report, _ = st.handle_event(ct_event("TagRole", {"roleName": "team-admin", "tags": [
        {"key": "eks-cluster-admin", "value": "mixed"}]}), env)
    yield "the role narrowed to one cluster (event)", outcome(rc, report)

    rc, report, _ = st.run_reconcile(extra=env)
    yield "nothing changed (full reconcile)", outcome(rc, report)


def test_the_default_level_writes_what_main_wrote_before_levels(st):
    seen = {}
    state(st, seen)  # the bootstrap's writes are not the function's
    st.reset_calls()
    got = []
    for name, said in scenario(st):
        got.append({"step": name, "run": said, "after": state(st, seen)})
        st.reset_calls()
    text = json.dumps(got, indent=1, sort_keys=True) + "\n"
    if os.environ.get("GOLDEN_WRITE") == "1":
        os.makedirs(os.path.dirname(GOLDEN), exist_ok=True)
        with open(GOLDEN, "w") as f:
            f.write(text)
    with open(GOLDEN) as f:
        want = json.load(f)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g == w, f"step {w['step']!r} differs:\n" + json.dumps({"got": g, "want": w}, indent=1, sort_keys=True)
    # The scenario wrote something on every store, so the comparison compares writes.
    first = got[0]["after"]
    assert first["cm"]["kubeWrites"] and first["mixed"]["entryWrites"] and first["api"]["entryWrites"]
    assert ["DeleteAccessEntry"] in got[1]["after"]["api"]["entryWrites"].values(), got[1]
