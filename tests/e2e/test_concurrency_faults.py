"""4. Concurrency without lost updates. 5. Faults: clear errors, nothing lost, the next run heals."""

import json
import subprocess
import threading

import yaml

from stack import ACCOUNT, BINARY, REPO, ct_event, map_users, owned


def test_twenty_invocations_and_another_writer(stack):
    names = [f"user{i:02d}" for i in range(20)]
    for n in names:
        stack.create_user(n, {"eks-cluster-admin": "true"})

    stop = threading.Event()
    added_roles = []
    errors = []

    def other_writer():
        """Someone else edits mapRoles with read-modify-write and resourceVersion, retrying on 409."""
        i = 0
        while not stop.is_set() and i < 15:
            cm = stack.get_aws_auth("prod")
            role = f"arn:aws:iam::{ACCOUNT}:role/other-{i}"
            cm["data"]["mapRoles"] += f"- rolearn: {role}\n  username: other-{i}\n  groups: [viewers]\n"
            code, body = stack.admin("PUT", "prod", stack.CM, cm)
            if code == 200:
                added_roles.append(role)
                i += 1
            elif code != 409:
                errors.append((code, body))
                return

    writer = threading.Thread(target=other_writer)
    writer.start()
    procs = []
    for n in names:
        ev = ct_event("TagUser", {"userName": n, "tags": [{"key": "eks-cluster-admin", "value": "true"}]})
        p = subprocess.Popen([BINARY, "handle-event", "-"], env=stack.function_env(), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p.stdin.write(json.dumps(ev))
        p.stdin.close()
        procs.append(p)
    results = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in procs]
    stop.set()
    writer.join(timeout=60)
    assert not errors, errors
    for rc, out, err in results:
        assert rc == 0, err
    retried = sum(1 for _, out, _ in results if '"attempts": 1' not in out)
    print(f"{retried} of 20 invocations retried after a 409")

    want = sorted(f"arn:aws:iam::{ACCOUNT}:user/{n}" for n in names)
    for cluster in ("prod", "staging"):
        cm = stack.get_aws_auth(cluster)
        assert sorted(u["userarn"] for u in map_users(cm)) == want, cluster
        assert owned(cm) == want
    roles = [r["rolearn"] for r in yaml.safe_load(stack.get_aws_auth("prod")["data"]["mapRoles"])]
    assert added_roles and all(r in roles for r in added_roles), "the other writer's edits survive"


def test_api_server_down_then_heals(stack):
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    stack.stop_apiserver("staging")
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc != 0
    assert "cluster staging" in err and "aws-auth" in err, err
    # The other cluster was still done.
    assert [(c["cluster"], c["status"]) for c in report["clusters"]] == [("prod", "ok"), ("staging", "failed")]
    assert report["clusters"][0]["added"] == [f"arn:aws:iam::{ACCOUNT}:user/alice"]
    stack.start_apiserver("staging")
    assert map_users(stack.get_aws_auth("staging")) == [], "nothing half-written"
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    staging = next(c for c in report["clusters"] if c["cluster"] == "staging")
    assert staging["added"] == [f"arn:aws:iam::{ACCOUNT}:user/alice"]


def test_user_deleted_before_the_event_is_read(stack):
    stack.create_user("new-admin-test", {"eks-cluster-admin": "true"})
    rc, _, err = stack.handle_event("tag-user.json")
    assert rc == 0, err
    stack.delete_user("new-admin-test")
    # The TagUser event arrives late: IAM says the user is gone, so its mapping goes.
    rc, report, err = stack.handle_event("tag-user.json")
    assert rc == 0, err
    assert all(c["removed"] == [f"arn:aws:iam::{ACCOUNT}:user/new-admin-test"] for c in report["clusters"])
    # A re-created user of the same name does not inherit admin.
    stack.create_user("new-admin-test")
    rc, report, err = stack.handle_event("tag-user.json")
    assert rc == 0, err
    assert map_users(stack.get_aws_auth("prod")) == []


def test_unparseable_aws_auth_is_left_alone_until_fixed(stack):
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    rc, _, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    cm = stack.get_aws_auth("prod")
    good_users = cm["data"]["mapUsers"]
    cm["data"]["mapUsers"] = good_users + "- userarn: [broken\n"
    code, body = stack.admin("PUT", "prod", stack.CM, cm)
    assert code == 200, body
    broken = stack.get_aws_auth("prod")

    rc, report, err = stack.handle_event("scheduled.json")
    assert rc != 0
    assert "data.mapUsers cannot be parsed at line" in err and "nothing was written" in err, err
    after = stack.get_aws_auth("prod")
    assert after["metadata"]["resourceVersion"] == broken["metadata"]["resourceVersion"]
    # staging was still reconciled (unchanged).
    assert [(c["cluster"], c["status"]) for c in report["clusters"]] == [("prod", "failed"), ("staging", "ok")]

    after["data"]["mapUsers"] = good_users
    code, body = stack.admin("PUT", "prod", stack.CM, after)
    assert code == 200, body
    rc, report, err = stack.handle_event("scheduled.json")
    assert rc == 0, err


def test_failed_iam_read_removes_nothing(stack):
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    rc, _, err = stack.handle_event("scheduled.json")
    assert rc == 0, err
    before = stack.get_aws_auth("prod")
    # IAM unreachable: the scheduled reconcile must fail, not read "no users" and remove alice.
    rc, report, err = stack.handle_event("scheduled.json", {"AWS_ENDPOINT_URL_IAM": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "1"})
    assert rc != 0 and report is None
    assert "GetAccountAuthorizationDetails" in err and "nothing was written" in err, err
    rc, report, err = stack.handle_event("tag-user-failed.json", {"AWS_ENDPOINT_URL_IAM": "http://127.0.0.1:9"})
    assert rc == 0 and report["ignored"], "failed CloudTrail calls need no IAM read at all"
    after = stack.get_aws_auth("prod")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_malformed_events_change_nothing(stack):
    before = stack.get_aws_auth("prod")["metadata"]["resourceVersion"]
    for ev, needle in [("malformed-not-json.txt", "not valid JSON"), ("malformed-unknown.json", "unrecognised event"),
                       ("malformed-no-username.json", "userName"), ("malformed-manual.json", "unknown action"),
                       ("s3-put-object.json", "unrecognised event")]:
        with open(f"{REPO}/events/{ev}") as f:
            text = f.read()
        rc, report, err = stack.handle_event(text)
        assert rc != 0 and needle in err, (ev, err)
    assert stack.get_aws_auth("prod")["metadata"]["resourceVersion"] == before
