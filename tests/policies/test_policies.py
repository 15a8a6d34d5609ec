"""The shipped IAM policies, linted and checked against each other and the template (issue 11).
The attack table itself is in simulate.test.mjs (an IAM evaluator, run by `node --test`)."""

import glob
import json
import os
import re

import pytest
from parliament import analyze_policy_string

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
POLICIES = sorted(glob.glob(os.path.join(REPO, "infra", "policies", "*.json")))
SCPS = [p for p in POLICIES if os.path.basename(p).startswith("scp-")]
PLATFORM = {
    "arn:aws:iam::111122223333:role/PlatformTeamAdmin",
    "arn:aws:iam::111122223333:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_PlatformTeam_0123456789abcdef",
}
DEPLOYER = "arn:aws:iam::111122223333:role/eks-admin-sync-deployer"
# Exempt only from the statements that keep the function's ownership marks on access entries its own.
FUNCTION_ROLE = "arn:aws:iam::111122223333:role/eks-admin-sync-function"
# The role EventBridge Scheduler invokes the function with at the next expiry: exempt only from the invoke rule.
INVOKER = "arn:aws:iam::111122223333:role/eks-admin-sync-expiry-invoker"


def load(path):
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), f"{path}: duplicate keys {keys}"
        return dict(pairs)

    with open(path) as f:
        return json.load(f, object_pairs_hook=no_duplicates)


def statements(path):
    return load(path)["Statement"]


@pytest.mark.parametrize("path", POLICIES, ids=os.path.basename)
def test_parliament_finds_nothing(path):
    with open(path) as f:
        findings = analyze_policy_string(f.read()).findings
    assert [(x.issue, x.detail, x.location) for x in findings] == []


@pytest.mark.parametrize("path", POLICIES, ids=os.path.basename)
def test_size_limits(path):
    size = len(json.dumps(load(path), separators=(",", ":")))
    limit = 5120 if path in SCPS else 6144  # SCP / managed policy (the boundary) character limits
    assert size <= limit, f"{size} > {limit}"


def exempted(stmt):
    cond = stmt.get("Condition", {})
    arns = cond.get("ArnNotEquals", {}).get("aws:PrincipalArn", [])
    return {arns} if isinstance(arns, str) else set(arns)


def test_exemptions_name_exact_principals():
    """No wildcard and no name-only match: a member-account admin cannot create a look-alike."""
    for path in SCPS:
        for s in statements(path):
            assert "ArnNotLike" not in s.get("Condition", {}), (path, s["Sid"])
            for arn in exempted(s):
                assert "*" not in arn and re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", arn), (path, s["Sid"], arn)
                allowed = PLATFORM | {DEPLOYER}
                if any(w in s["Sid"] for w in ("Entries", "Marks", "Schedule")):
                    allowed = allowed | {FUNCTION_ROLE}
                if "Invokes" in s["Sid"]:
                    allowed = allowed | {INVOKER}
                assert arn in allowed, (path, s["Sid"], arn)


def test_the_tag_key_is_the_products():
    with open(os.path.join(REPO, "src", "core", "settings.rs")) as f:
        key = re.search(r'pub const DEFAULT_TAG_KEY: &str = "([^"]+)"', f.read()).group(1)
    for path in POLICIES:
        if path.endswith(("scp-protect-function.json", "scp-protect-trusted-principals.json")):
            continue  # protect the function and the principals it trusts, not the tag
        text = json.dumps(load(path))
        assert f"ResourceTag/{key}" in text and f'"{key}"' in text, path


def test_protected_names_are_the_templates():
    """The SCPs and the boundary name the function, its role, rules and queue as the template names them
    (a stack called eks-admin-sync)."""
    with open(os.path.join(REPO, "template.yaml")) as f:
        template = f.read()
    assert "FunctionName: !Ref AWS::StackName" in template
    assert "RoleName: !Sub ${AWS::StackName}-function" in template
    assert "QueueName: !Sub ${AWS::StackName}-dead-letters" in template
    for path in [os.path.join(REPO, "infra", "policies", n) for n in ("scp-protect-function.json", "permission-boundary.json")]:
        resources = json.dumps([s["Resource"] for s in statements(path)])
        for want in ("function:eks-admin-sync*", "role/eks-admin-sync-function", "rule/eks-admin-sync*", ":eks-admin-sync*"):
            assert want in resources, (path, want)
