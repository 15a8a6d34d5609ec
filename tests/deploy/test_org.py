"""The organization rollout (issue 26): `make package-org`'s template deployed as a StackSet would deploy it, to
two member accounts of an organization, each sending its audit events to the security account's central bus
(infra/central-bus.yaml), read back there through a rule to a queue. An account outside the organization is
refused by the bus's policy (aws:PrincipalOrgID), as EventBridge refuses it.

The local CloudFormation stands in for a StackSet's instances: one stack per account, created with that
account's credentials (an assumed role, as the StackSet execution role is). What StackSets add (the
administration role, automatic deployment to an OU) is AWS's and not emulated.
"""

import json
import os
import re
import subprocess
import sys
import zipfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REGION = "us-east-1"


def package(tmp_path):
    boot = tmp_path / "bootstrap"
    boot.write_bytes(b"#!/bin/sh\n")
    out = tmp_path / "org"
    p = subprocess.run([sys.executable, os.path.join(REPO, "infra", "package_org.py"), "--bootstrap", str(boot),
                        "--out", str(out)], capture_output=True, text=True, env=dict(os.environ, AWS_DEFAULT_REGION=REGION))
    assert p.returncode == 0, p.stdout + p.stderr
    return out


def account_creds(aws, account):
    """Credentials in `account`, as a StackSet's execution role there has them."""
    c = aws("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/AWSCloudFormationStackSetExecutionRole",
                               RoleSessionName="stackset")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": c["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
            "AWS_SESSION_TOKEN": c["SessionToken"]}


def organization(aws, names):
    """An organization of the management account and one new member account per name: {name: account id}."""
    org = aws("organizations")
    org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    ids = {}
    for n in names:
        status = org.create_account(AccountName=n, Email=f"{n}@example.com")["CreateAccountStatus"]
        ids[n] = org.describe_create_account_status(CreateAccountRequestId=status["Id"])["CreateAccountStatus"]["AccountId"]
    return org_id, ids


def test_the_central_bus_route_puts_only_this_deployments_events_on_that_bus():
    from samtranslator.yaml_helper import yaml_parse

    with open(os.path.join(REPO, "template.yaml")) as f:
        t = yaml_parse(f.read())
    res = t["Resources"]
    assert t["Conditions"]["ForwardsToCentralBus"] == {"Fn::And": [
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "CentralEventBusArn"}, ""]}]},
        {"Fn::Not": [{"Fn::Equals": [{"Ref": "EventBus"}, ""]}]}]}
    rule, role = res["CentralBusRule"], res["CentralBusRole"]
    assert rule["Condition"] == role["Condition"] == "ForwardsToCentralBus"
    assert rule["Properties"]["EventPattern"] == {"source": ["eks-admin-sync"],
                                                  "detail": {"deployment": [{"Ref": "DeploymentId"}]}}
    assert rule["Properties"]["Targets"] == [{"Id": "central-bus", "Arn": {"Ref": "CentralEventBusArn"},
                                              "RoleArn": {"Fn::GetAtt": ["CentralBusRole", "Arn"]}}]
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "events.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    [pol] = role["Properties"]["Policies"]
    assert pol["PolicyDocument"]["Statement"] == [{"Effect": "Allow", "Action": "events:PutEvents",
                                                   "Resource": {"Ref": "CentralEventBusArn"}}]


def test_the_org_package_is_plain_cloudformation(tmp_path):
    out = package(tmp_path)
    files = sorted(os.listdir(out))
    zips = [f for f in files if f.endswith(".zip")]
    assert files == sorted(["central-bus.yaml", "forwarder.yaml", "template.json"] + zips) and len(zips) == 1
    with zipfile.ZipFile(out / zips[0]) as z:
        [info] = z.infolist()
        assert info.filename == "bootstrap" and (info.external_attr >> 16) & 0o111, "an executable bootstrap"
        assert info.compress_type == zipfile.ZIP_DEFLATED, "compressed, as Lambda's 50 MB upload limit counts it"
    t = json.loads((out / "template.json").read_text())
    assert "Transform" not in t
    assert not [r for r in t["Resources"].values() if r["Type"].startswith("AWS::Serverless::")]
    [fn] = [r for r in t["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert fn["Properties"]["Code"] == {"S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
                                        "S3Key": {"Ref": "ArtifactKey"}}
    assert t["Parameters"]["ArtifactKey"]["Default"] == zips[0]
    # No parameter value was baked in: the settings stay the StackSet's parameters.
    env = fn["Properties"]["Environment"]["Variables"]
    assert env["CLUSTER_NAMES"] == {"Fn::Join": [" ", {"Ref": "ClusterNames"}]}
    assert env["DEPLOYMENT_ID"] == {"Ref": "DeploymentId"}
    # Names come from the Name parameter, not from the name a StackSet makes up for its stacks
    # (StackSet-<set>-<uuid>): the role's name fits IAM's 64 characters, and infra/policies' patterns match.
    assert "AWS::StackName" not in json.dumps(t) and t["Parameters"]["Name"]["Default"] == "eks-admin-sync"
    role = next(r for r in t["Resources"].values()
                if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == {"Fn::Sub": "${Name}-function"})
    assert fn["Properties"]["FunctionName"] == {"Ref": "Name"}, role
    # The longest Name allowed still makes role names IAM accepts (64 characters at most).
    pattern = t["Parameters"]["Name"]["AllowedPattern"]
    assert re.fullmatch(pattern, "a" * 40) and not re.fullmatch(pattern, "a" * 41)
    role_names = [r["Properties"]["RoleName"]["Fn::Sub"] for r in t["Resources"].values()
                  if r["Type"] == "AWS::IAM::Role" and "RoleName" in r["Properties"]]
    assert role_names and all(len(n.replace("${Name}", "a" * 40)) <= 64 for n in role_names), role_names
    # The same bytes give the same key, so an unchanged build does not update every account.
    (tmp_path / "again").mkdir()
    again = package(tmp_path / "again")
    assert sorted(f for f in os.listdir(again) if f.endswith(".zip")) == zips


def test_two_accounts_reach_the_central_bus_and_an_outsider_does_not(aws, tmp_path):
    out = package(tmp_path)
    org_id, ids = organization(aws, ["security", "team-a", "team-b"])
    outsider = "999999999999"
    security = {svc: aws.client(svc, account_creds(aws, ids["security"])) for svc in ("cloudformation", "events", "sqs")}

    # The security account's central bus, and a rule of its own to a queue.
    cfn = security["cloudformation"]
    cfn.create_stack(StackName="eks-admin-sync-central", TemplateBody=(out / "central-bus.yaml").read_text(),
                     Parameters=[{"ParameterKey": "OrganizationId", "ParameterValue": org_id}])
    stack = cfn.describe_stacks(StackName="eks-admin-sync-central")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    bus_arn = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}["BusArn"]
    assert bus_arn == f"arn:aws:events:{REGION}:{ids['security']}:event-bus/eks-admin-sync-central"
    policy = json.loads(security["events"].describe_event_bus(Name="eks-admin-sync-central")["Policy"])
    [stmt] = policy["Statement"]
    assert stmt["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": org_id}} and stmt["Principal"] == "*"
    sqs = security["sqs"]
    q = sqs.create_queue(QueueName="central-audit")["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    security["events"].put_rule(Name="all-audit", EventBusName="eks-admin-sync-central",
                                EventPattern=json.dumps({"source": ["eks-admin-sync"]}))
    security["events"].put_targets(Rule="all-audit", EventBusName="eks-admin-sync-central",
                                   Targets=[{"Id": "queue", "Arn": q_arn}])

    # The code in the artifact bucket of the region, then one stack per account from the org template.
    key = next(f for f in os.listdir(out) if f.endswith(".zip"))
    aws("s3").create_bucket(Bucket=f"acme-eks-admin-sync-{REGION}")
    aws("s3").upload_file(str(out / key), f"acme-eks-admin-sync-{REGION}", key)
    template = (out / "template.json").read_text()
    params = {"ClusterNames": "prod", "AccessPolicyNames": "AmazonEKSClusterAdminPolicy",
              "AlarmEmail": "platform@example.com", "CentralEventBusArn": bus_arn, "ArtifactBucketPrefix": "acme-eks-admin-sync"}
    for name, account in [("team-a", ids["team-a"]), ("team-b", ids["team-b"]), ("outsider", outsider)]:
        creds = account_creds(aws, account)
        c = aws.client("cloudformation", creds)
        # A StackSet's own name for its stack instance.
        stack_name = "StackSet-eks-admin-sync-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
        c.create_stack(StackName=stack_name, TemplateBody=template, Capabilities=["CAPABILITY_NAMED_IAM"],
                       Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        s = c.describe_stacks(StackName=stack_name)["Stacks"][0]
        assert s["StackStatus"] == "CREATE_COMPLETE", (name, s)
        fn_name = {o["OutputKey"]: o["OutputValue"] for o in s["Outputs"]}["FunctionName"]
        assert fn_name == "eks-admin-sync", "named by the Name parameter, whatever the stack is called"
        ev = aws.client("events", creds)
        rules = ev.list_rules()["Rules"]
        central = [r for r in rules if json.loads(r.get("EventPattern") or "{}").get("source") == ["eks-admin-sync"]
                   and "AnnounceGrants" not in r["Name"]]
        assert len(central) == 1, rules
        [target] = ev.list_targets_by_rule(Rule=central[0]["Name"])["Targets"]
        assert target["Arn"] == bus_arn and ":role/" in target["RoleArn"]
        # The emulator cannot run the function (no Docker), and moto routes put_events through schedule-only
        # rules too: the function is detached from its rules before an event is put.
        for r in rules:
            fn_targets = [t["Id"] for t in ev.list_targets_by_rule(Rule=r["Name"])["Targets"] if ":lambda:" in t["Arn"]]
            if fn_targets:
                ev.remove_targets(Rule=r["Name"], Ids=fn_targets)
        # An audit event as the function puts it on the account's bus.
        ev.put_events(Entries=[{"Source": "eks-admin-sync", "DetailType": "EKS admin access granted",
                                "Detail": json.dumps({"deployment": "default", "cluster": f"prod-{name}",
                                                      "action": "grant"})}])

    got = []
    for _ in range(5):
        msgs = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        got += [json.loads(m["Body"])["detail"]["cluster"] for m in msgs]
    assert sorted(got) == ["prod-team-a", "prod-team-b"], got
    assert aws.calls().get("events:CrossAccountRefused") == 1, "the outsider's event was refused by the bus policy"
