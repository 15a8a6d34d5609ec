"""`make demo`: the seed scenario, step by step, against the local stack (nothing leaves 127.0.0.1)."""

import datetime as dt
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lambda_runtime_api import RuntimeApi, lambda_env  # noqa: E402
from stack import map_users, ADMIN_POLICY, BINARY, REPO, Stack  # noqa: E402

# The expiry wake-up as the template configures it (its schedule group is made in the demo's step).
WAKEUP = {"EXPIRY_SCHEDULE_GROUP": "eks-admin-sync", "EXPIRY_SCHEDULE_NAME": "eks-admin-sync-default-expiry",
          "EXPIRY_SCHEDULE_ROLE_ARN": "arn:aws:iam::123456789012:role/eks-admin-sync-expiry-invoker",
          "EXPIRY_SCHEDULE_TARGET_ARN": "arn:aws:lambda:us-east-1:123456789012:function:eks-admin-sync"}
BOLD, DIM, GREEN, RED, RESET = ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
step_no = 0


def step(title):
    global step_no
    step_no += 1
    print(f"\n{BOLD}== {step_no}. {title}{RESET}", flush=True)


def show(text, indent="    "):
    for line in text.rstrip("\n").splitlines():
        print(f"{indent}{line}")


def expect(ok, what):
    print(f"    {GREEN + 'OK' if ok else RED + 'UNEXPECTED'}{RESET}: {what}", flush=True)
    if not ok:
        raise SystemExit(f"demo failed at step {step_no}: {what}")


def show_aws_auth(stack):
    cm = stack.get_aws_auth("prod")
    for key in ("mapRoles", "mapUsers"):
        if key in cm.get("data", {}):
            print(f"    {DIM}data.{key}:{RESET}")
            show(cm["data"][key], "      ")
    ann = cm["metadata"].get("annotations", {}).get("eks-admin-sync/owned-user-arns")
    if ann:
        print(f"    {DIM}annotation eks-admin-sync/owned-user-arns:{RESET} {ann}")


def main():
    # prod starts in CONFIG_MAP mode (aws-auth only); platform in API mode (access entries only).
    stack = Stack(clusters=("prod", "platform"), modes={"platform": "API"})
    step("Start the local stack: etcd + kube-apiserver (EKS-style IAM authentication), moto, authenticator")
    t0 = time.time()
    stack.start()
    code, version = stack.admin("GET", "prod", "/version")
    print(f"    cluster 'prod' at {stack.api_url('prod')} (Kubernetes {version.get('gitVersion')}), "
          f"AWS emulator at {stack.aws_url}, up in {time.time() - t0:.1f}s")
    rt = RuntimeApi()
    fn = None
    try:
        step("aws-auth as EKS and the bootstrap step left it (node role + the function's own role)")
        show_aws_auth(stack)

        step("Create IAM user new-admin-test with an access key")
        creds = stack.create_user("new-admin-test")
        print(f"    access key {creds['AWS_ACCESS_KEY_ID']}")

        step("new-admin-test runs `kubectl get all -A` (token from `eks-admin-sync token`, like `aws eks get-token`)")
        p = stack.kubectl_as("prod", creds, ["get", "all", "-A"])
        show(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.stdout)
        expect(p.returncode != 0, "refused: the user is not mapped yet")

        step("Start the function in Lambda mode against a local Lambda Runtime API")
        fn = subprocess.Popen([BINARY], env=stack.function_env(lambda_env(rt.address) | {"CLUSTER_NAMES": "prod"}),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"    {BINARY} (AWS_LAMBDA_RUNTIME_API={rt.address}, CLUSTER_NAMES=prod)")

        step("Tag the user eks-cluster-admin=true and deliver the CloudTrail TagUser event (events/tag-user.json)")
        stack.iam().tag_user(UserName="new-admin-test", Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
        with open(os.path.join(REPO, "events", "tag-user.json")) as f:
            kind, result = rt.invoke(json.load(f))
        if kind == "response":
            for c in result["clusters"]:
                summary = {k: c[k] for k in ("cluster", "added", "updated", "removed", "unchanged", "skipped", "written")}
                show(json.dumps(summary))
        else:
            show(json.dumps(result, indent=2))
        expect(kind == "response" and result["clusters"][0]["added"], "the function added the mapping")
        audit = result.get("audit", []) if kind == "response" else []
        if audit:
            a = audit[0]
            show(f"audit: {a['action']} {a['principal']} on {a['cluster']}, by {a['trigger']['actor']['arn']} "
                 f"(CloudTrail event {a['trigger']['eventId']}, from {a['trigger']['sourceIp']})")
        expect(any(a["trigger"].get("actor") for a in audit), "the audit record names who tagged the user")

        step("aws-auth after: the new entry in mapUsers, ownership recorded, mapRoles untouched")
        show_aws_auth(stack)

        step("new-admin-test runs `kubectl get all -A` again")
        p = stack.kubectl_as("prod", creds, ["get", "all", "-A"])
        show(p.stdout if p.returncode == 0 else p.stderr)
        expect(p.returncode == 0, "allowed as system:masters")

        step("Remove the tag and deliver the UntagUser event")
        stack.iam().untag_user(UserName="new-admin-test", TagKeys=["eks-cluster-admin"])
        with open(os.path.join(REPO, "events", "untag-user.json")) as f:
            kind, result = rt.invoke(json.load(f))
        expect(kind == "response" and result["clusters"][0]["removed"], "the function removed the mapping")
        time.sleep(1.1)  # a fresh token (the API server caches a valid token for 10 s)
        p = stack.kubectl_as("prod", creds, ["get", "all", "-A"])
        show(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.stdout)
        expect(p.returncode != 0, "refused again: access is gone")

        step("A typo in ADMIN_TAG_KEY: the removal guard refuses to remove anything, and says how to override")
        stack.iam().tag_user(UserName="new-admin-test", Tags=[{"Key": "eks-cluster-admin", "Value": "true"}])
        rc, _, err = stack.handle_event("tag-user.json", {"CLUSTER_NAMES": "prod"})
        expect(rc == 0, "granted again")
        rc, report, err = stack.handle_event("scheduled.json", {"CLUSTER_NAMES": "prod", "ADMIN_TAG_KEY": "eks-cluster-admn"})
        show(err.strip().splitlines()[-1][:700])
        expect(rc != 0 and report["clusters"][0]["status"] == "guarded"
               and len(map_users(stack.get_aws_auth("prod"))) == 1, "guarded: nothing removed, non-zero exit")

        step("A second cluster, 'platform', in authentication mode API: EKS reads access entries only")
        rc, report, err = stack.handle_event("tag-user.json", {"CLUSTER_NAMES": "prod platform"})
        for c in report["clusters"]:
            show(json.dumps({k: c[k] for k in ("cluster", "store", "added", "unchanged")}))
        entry = stack.entries("platform").get(f"arn:aws:iam::123456789012:user/new-admin-test", {})
        show(f"access entry: username {entry.get('username')}, groups {entry.get('kubernetesGroups')}, "
             f"policies {list(entry.get('policies', {}))}, tags {entry.get('tags')}")
        expect(rc == 0 and ADMIN_POLICY in entry.get("policies", {}), "an access entry with AmazonEKSClusterAdminPolicy")
        expect(stack.function_requests("platform") == [], "no token signed, no Kubernetes call on the API cluster")
        p = stack.kubectl_as("platform", creds, ["get", "all", "-A"])
        expect(p.returncode == 0, "new-admin-test is cluster admin on platform")

        step("Move prod to API_AND_CONFIG_MAP (aws eks update-cluster-config); the next scheduled reconcile migrates")
        stack.set_mode("prod", "API_AND_CONFIG_MAP")
        rc, report, err = stack.handle_event("scheduled.json", {"CLUSTER_NAMES": "prod platform"})
        prod = next(c for c in report["clusters"] if c["cluster"] == "prod")
        show(json.dumps({k: prod[k] for k in ("cluster", "store", "added", "migrated", "removed")}))
        show_aws_auth(stack)
        expect(rc == 0 and prod["migrated"] and map_users(stack.get_aws_auth("prod")) == [],
               "the mapping moved to an access entry (created and confirmed first); mapRoles untouched")
        p = stack.kubectl_as("prod", creds, ["get", "all", "-A"])
        expect(p.returncode == 0, "new-admin-test kept admin through the migration")

        step("IAM Identity Center: assigning permission set Platform_Admin to the account makes its role")
        env = {"CLUSTER_NAMES": "prod platform", "ADMIN_PERMISSION_SETS": "Platform_Admin"}
        role = stack.sso_role("Platform_Admin", "0123456789abcdef", region="eu-west-1")
        show(role)
        session = stack.assume(role, "jane@example.com")
        p = stack.kubectl_as("platform", session, ["get", "all", "-A"])
        expect(p.returncode != 0, "jane's permission-set session is refused: not granted yet")
        name = role.rsplit("/", 1)[-1]
        ev = json.load(open(os.path.join(REPO, "events", "create-role-sso.json")))
        ev["detail"]["requestParameters"].update(roleName=name, path="/aws-reserved/sso.amazonaws.com/eu-west-1/")
        rc, report, err = stack.handle_event(ev, env)
        for c in report["clusters"]:
            show(json.dumps({k: c[k] for k in ("cluster", "store", "added")}))
        expect(rc == 0 and all(c["added"] for c in report["clusters"]),
               "the CreateRole event from sso.amazonaws.com granted the role on both clusters")
        for cluster in ("prod", "platform"):
            who = stack.kubectl_as(cluster, session, ["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"])
            show(f"{cluster}: kubectl auth whoami -> {who.stdout}")
            expect(stack.kubectl_as(cluster, session, ["get", "all", "-A"]).returncode == 0,
                   f"jane is cluster admin on {cluster}, named after the role and her session")

        step("Temporary admin: tag oncall-jane admin until 8 seconds from now (eks-cluster-admin-expires)")
        env = {"CLUSTER_NAMES": "prod platform", "ADMIN_PERMISSION_SETS": "Platform_Admin", **WAKEUP}
        sched = stack.aws("scheduler")
        sched.create_schedule_group(Name=WAKEUP["EXPIRY_SCHEDULE_GROUP"])
        queue = stack.event_probe("demo")
        until = (dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(seconds=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
        tags = {"eks-cluster-admin": "true", "eks-cluster-admin-expires": until}
        jane = stack.create_user("oncall-jane", tags)
        ev = json.load(open(os.path.join(REPO, "events", "tag-user.json")))
        ev["detail"]["requestParameters"] = {"userName": "oncall-jane", "tags": [{"key": k, "value": v} for k, v in tags.items()]}
        rc, report, err = stack.handle_event(ev, env)
        show(json.dumps({"nextExpiry": report.get("nextExpiry"), "wakeup": report.get("wakeup")}))
        s = sched.get_schedule(GroupName=WAKEUP["EXPIRY_SCHEDULE_GROUP"], Name=WAKEUP["EXPIRY_SCHEDULE_NAME"])
        show(f"schedule {s['Name']}: {s['ScheduleExpression']} {s['ScheduleExpressionTimezone']}, input {s['Target']['Input']}")
        expect(rc == 0 and all(c["added"] for c in report["clusters"]), "granted on both clusters, with a one-time wake-up just after the expiry")
        expect(stack.kubectl_as("platform", jane, ["get", "all", "-A"]).returncode == 0, "oncall-jane is cluster admin")
        for e in stack.drain(queue):
            show(f"event on the local bus: {e['detail-type']}: {e['detail']['principal']} on {e['detail']['cluster']}")

        step("EventBridge Scheduler fires the wake-up at its time (played here: the emulator stores schedules, it does not fire them)")
        wake = dt.datetime.strptime(s["ScheduleExpression"][3:-1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
        time.sleep(max(0.0, wake.timestamp() - time.time()))
        rc, report, err = stack.handle_event(s["Target"]["Input"], env)
        show(json.dumps({"trigger": report["trigger"]["kind"], "wakeup": report.get("wakeup")}))
        for e in stack.drain(queue):
            show(f"event on the local bus: {e['detail-type']}: {e['detail']['principal']} on {e['detail']['cluster']}")
        p = stack.kubectl_as("platform", jane, ["get", "all", "-A"])
        expect(rc == 0 and p.returncode != 0, "the grant expired on its own: revoked with audit action expire, the schedule deleted")
    finally:
        if fn is not None:
            fn.terminate()
            fn.wait(timeout=10)
        rt.close()
        step("Stop the stack")
        stack.stop()
    print(f"\n{GREEN}Demo finished in {time.time() - t0:.1f}s.{RESET}")


if __name__ == "__main__":
    main()
