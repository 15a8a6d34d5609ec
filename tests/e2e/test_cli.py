"""The CLI's contract: --help everywhere, errors on stderr with a non-zero exit, nothing written on bad input."""

import json
import os
import subprocess

from stack import BINARY


def run(args, env=None, input=None):
    base = {"PATH": os.environ.get("PATH", ""), "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    return subprocess.run([BINARY] + args, env={**base, **(env or {})}, input=input, capture_output=True, text=True,
                          timeout=30)


def test_help_on_every_command():
    for args in [["--help"], ["reconcile", "--help"], ["plan", "--help"], ["handle-event", "--help"], ["token", "--help"]]:
        p = run(args)
        assert p.returncode == 0 and "Usage:" in p.stdout, (args, p.stdout, p.stderr)
    # The settings come from their one declaration (src/core/settings.rs), defaults included.
    help_text = run(["--help"]).stdout
    for line in ["CLUSTER_NAMES [default: (required)]", "ADMIN_GROUP_MEMBER_PATH [default: /eks-admins/]",
                 "EVENT_BUS [default: default]", "FUNCTION_ROLE_ARN [default: (none; the template sets it)]"]:
        assert line in help_text, help_text


def test_bad_usage_and_configuration_fail_clearly():
    cases = [
        (["frobnicate"], {}, "unrecognized subcommand"),
        (["token"], {}, "--cluster"),
        (["token", "--cluster", "not a name"], {}, "not a valid EKS cluster name"),
        (["reconcile", "--user", "a b"], {"CLUSTER_NAMES": "prod"}, "not a valid IAM user name"),
        (["reconcile"], {}, "CLUSTER_NAMES is empty"),
        (["reconcile"], {"CLUSTER_NAMES": "prod", "DRY_RUN": "maybe"}, "DRY_RUN"),
        (["handle-event", "/nonexistent/event.json"], {"CLUSTER_NAMES": "prod"}, "reading /nonexistent/event.json"),
        (["handle-event", "-"], {"CLUSTER_NAMES": "prod"}, "not valid JSON"),
    ]
    for args, env, needle in cases:
        p = run(args, env, input="{oops")
        assert p.returncode != 0, (args, p.stdout)
        assert needle in p.stderr, (args, p.stderr)
        assert p.stdout == "", (args, p.stdout)


def test_token_is_an_exec_credential_signed_locally():
    p = run(["token", "--cluster", "prod"], {"AWS_REGION": "eu-west-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                                              "AWS_SECRET_ACCESS_KEY": "secret"})
    assert p.returncode == 0, p.stderr
    cred = json.loads(p.stdout)
    assert cred["kind"] == "ExecCredential" and cred["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert cred["status"]["token"].startswith("k8s-aws-v1.")
    assert cred["status"]["expirationTimestamp"].endswith("Z")


def test_logs_piped_to_a_file_carry_no_colour_codes(stack):
    stack.create_user("alice", {"eks-cluster-admin": "true"})
    p = stack.run(["plan"])
    assert p.returncode == 0, p.stderr
    assert "INFO" in p.stderr and "cluster reconciled" in p.stderr, p.stderr
    assert "\x1b[" not in p.stderr and "\x1b[" not in p.stdout
