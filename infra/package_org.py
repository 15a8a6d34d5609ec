"""Packages eks-admin-sync for a CloudFormation StackSet: `make package-org`.

StackSets deploy plain CloudFormation: their execution role cannot process transforms (CAPABILITY_AUTO_EXPAND is
not available to a StackSet instance), so the SAM transform is resolved here, with the AWS SAM translator, and the
function's code is taken from a bucket in each region the StackSet deploys to (Lambda reads code only from a
bucket in its own region).

Writes to OUT (default dist/org):
- template.json: template.yaml without the transform; the function's code at s3://<ArtifactBucketPrefix>-<region>/
  <ArtifactKey>; the names the stack's name made made from a `Name` parameter (default eks-admin-sync), since a
  StackSet makes up its stacks' names; every other parameter and condition as in template.yaml, unresolved (the
  translator is given no parameter values, so none is baked in).
- eks-admin-sync-<sha256 prefix>.zip: the function's bootstrap (from `sam build`); the name changes with the code,
  so a StackSet update with the new key replaces the code everywhere. ArtifactKey defaults to it.
- forwarder.yaml (the us-east-1 forwarder, its own StackSet) and central-bus.yaml (the security account's bus):
  plain CloudFormation already, copied.

Run: python infra/package_org.py [--bootstrap .aws-sam/build/Function/bootstrap] [--out dist/org]
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import zipfile

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PLACEHOLDER_CODE = "s3://eks-admin-sync-artifacts-placeholder/bootstrap.zip"


class NoManagedPolicies:
    """The template names no AWS managed policy by name, so the translator never needs to look one up (that would
    call IAM). Should it ask, packaging stops: a name resolved here would be one account's answer baked in."""

    def load(self):
        raise SystemExit("template.yaml names an AWS managed policy by name: give its ARN instead")


def zip_bootstrap(bootstrap, out):
    """The deployment package: `bootstrap` at the root, as provided.al2023 runs it. Returns its file name."""
    with open(bootstrap, "rb") as f:
        code = f.read()
    name = f"eks-admin-sync-{hashlib.sha256(code).hexdigest()[:16]}.zip"
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o755 << 16  # executable
    info.compress_type = zipfile.ZIP_DEFLATED  # a ZipInfo is stored uncompressed unless it says otherwise
    with zipfile.ZipFile(os.path.join(out, name), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(info, code)
    return name


def named_by_parameter(node):
    """Every name the template derives from the stack's name, derived from the `Name` parameter instead: a
    StackSet names its stacks StackSet-<set>-<uuid>, which would make the function's role name too long for IAM
    (64 characters) and no name would match the `eks-admin-sync*` patterns of infra/policies."""
    if isinstance(node, list):
        return [named_by_parameter(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node == {"Ref": "AWS::StackName"}:
        return {"Ref": "Name"}
    if "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        if isinstance(sub, str):
            return {"Fn::Sub": sub.replace("${AWS::StackName}", "${Name}")}
        return {"Fn::Sub": [sub[0].replace("${AWS::StackName}", "${Name}"), named_by_parameter(sub[1])]}
    return {k: named_by_parameter(v) for k, v in node.items()}


def plain_template(sam, key):
    """template.yaml as plain CloudFormation, its code in the regional artifact buckets."""
    sam = copy.deepcopy(sam)
    sam["Resources"]["Function"]["Properties"]["CodeUri"] = PLACEHOLDER_CODE
    cfn = transform(sam, {}, NoManagedPolicies())
    functions = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    if len(functions) != 1:
        raise SystemExit(f"expected one function in the translated template, found {len(functions)}")
    functions[0]["Properties"]["Code"] = {
        "S3Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
        "S3Key": {"Ref": "ArtifactKey"},
    }
    cfn["Resources"] = named_by_parameter(cfn["Resources"])
    cfn["Outputs"] = named_by_parameter(cfn.get("Outputs", {}))
    cfn["Parameters"]["Name"] = {
        "Type": "String",
        "Default": "eks-admin-sync",
        "AllowedPattern": "^[a-zA-Z][a-zA-Z0-9-]{0,39}$",
        "Description": "Names the function, its role, queue, log group and schedules in each account (in place of "
                       "the stack's name, which a StackSet makes up). infra/policies protect eks-admin-sync*.",
    }
    cfn["Parameters"]["ArtifactBucketPrefix"] = {
        "Type": "String",
        "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,40}$",
        "Description": "Buckets holding the function's code, one per region: <prefix>-<region> (e.g. "
                       "acme-eks-admin-sync-eu-west-1), readable by every target account.",
    }
    cfn["Parameters"]["ArtifactKey"] = {
        "Type": "String",
        "Default": key,
        "AllowedPattern": "^[A-Za-z0-9._/-]+\\.zip$",
        "Description": "The code's object key in each regional bucket (make package-org names it by its content).",
    }
    leftovers = PLACEHOLDER_CODE.split("/")[2]
    text = json.dumps(cfn)
    if "Transform" in cfn or "AWS::Serverless::" in text or leftovers in text or "AWS::StackName" in text:
        raise SystemExit("the translated template still needs the SAM transform or names the placeholder bucket")
    return cfn


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=os.path.join(REPO, ".aws-sam", "build", "Function", "bootstrap"))
    ap.add_argument("--out", default=os.path.join(REPO, "dist", "org"))
    args = ap.parse_args()
    if not os.path.isfile(args.bootstrap):
        sys.exit(f"{args.bootstrap} is missing: run `make package` (sam build) first")
    os.makedirs(args.out, exist_ok=True)
    key = zip_bootstrap(args.bootstrap, args.out)
    with open(os.path.join(REPO, "template.yaml")) as f:
        cfn = plain_template(yaml_parse(f.read()), key)
    with open(os.path.join(args.out, "template.json"), "w") as f:
        json.dump(cfn, f, indent=1, sort_keys=True)
        f.write("\n")
    for extra in ("forwarder.yaml", "central-bus.yaml"):
        shutil.copy(os.path.join(REPO, "infra", extra), os.path.join(args.out, extra))
    print(f"{args.out}: template.json, {key}, forwarder.yaml, central-bus.yaml")


if __name__ == "__main__":
    main()
