"""A TokenReview webhook that authenticates EKS bearer tokens the way aws-iam-authenticator does for EKS.

Checks (pkg/token/token.go): prefix, base64url without padding, length, URL scheme/host/path, allowed query
keys without duplicates, Action, X-Amz-Expires range, X-Amz-Date window, x-k8s-aws-id among the signed
headers; then GETs the presigned URL with the cluster id header and maps the caller's canonical ARN as EKS
does for the cluster's authentication mode (asked of the local EKS emulator):
- CONFIG_MAP: the live kube-system/aws-auth ConfigMap only (mapUsers, mapRoles, mapAccounts), read by
  aws-iam-authenticator's own parser (the awsauth-parse helper, built from the Go module proxy), so a document
  EKS would read differently from us fails the tests;
- API_AND_CONFIG_MAP: the caller's access entry when there is one (it takes precedence), else aws-auth;
- API: access entries only.
An access entry gives its username and kubernetesGroups (EC2_LINUX: the node identity). Its access policies
stand in for EKS's own authorizer: a cluster-scoped policy adds the group `eks-access-policy:<name>`, which
the stack binds to the matching Kubernetes ClusterRole (AmazonEKSClusterAdminPolicy → cluster-admin,
AmazonEKSAdminPolicy → admin, AmazonEKSEditPolicy → edit, AmazonEKSViewPolicy → view). Namespace-scoped
associations grant nothing here.
Only the https/STS-host rule is relaxed, to the one local STS endpoint given on the command line.

Run: python authenticator.py --port N --sts http://127.0.0.1:P --ec2 http://127.0.0.1:P --eks http://127.0.0.1:P \
       --cluster NAME=https://127.0.0.1:PORT ... --admin-token T --ca FILE
"""

import argparse
import base64
import binascii
import datetime as dt
import json
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


PREFIX = "k8s-aws-v1."
MAX_TOKEN_LEN = 4096
ALLOWED = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
           "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"}
VALID_FOR = dt.timedelta(minutes=15)


class Rejected(Exception):
    pass


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def verify_token(token, cluster_id, sts_base, now=None):
    """Returns the STS caller identity dict for a valid token, or raises Rejected."""
    now = now or dt.datetime.now(dt.timezone.utc)
    if not token.startswith(PREFIX):
        raise Rejected("token is missing expected prefix")
    if len(token) > MAX_TOKEN_LEN:
        raise Rejected("token is too large")
    body = token[len(PREFIX):]
    if "=" in body or not re.fullmatch(r"[A-Za-z0-9_-]*", body):
        raise Rejected("token is not base64url without padding")
    try:
        url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise Rejected(f"token does not decode: {e}")
    parsed = urllib.parse.urlsplit(url)
    local = urllib.parse.urlsplit(sts_base)
    if (parsed.scheme, parsed.netloc) != (local.scheme, local.netloc):
        if parsed.scheme != "https":
            raise Rejected(f"unexpected scheme {parsed.scheme!r}")
        raise Rejected(f"unexpected hostname {parsed.hostname!r}: not an STS endpoint")
    if parsed.path != "/":
        raise Rejected("unexpected path in pre-signed URL")
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    seen = {}
    for k, v in pairs:
        lk = k.lower()
        if lk not in ALLOWED:
            raise Rejected(f"non-whitelisted query parameter {k!r}")
        if lk in seen:
            raise Rejected(f"query parameter {k!r} given more than once")
        seen[lk] = v
    if seen.get("action") != "GetCallerIdentity":
        raise Rejected("unexpected action parameter in pre-signed URL")
    signed = seen.get("x-amz-signedheaders", "").split(";")
    if "x-k8s-aws-id" not in signed:
        raise Rejected("client did not sign the x-k8s-aws-id header in the pre-signed URL")
    try:
        expires = int(seen["x-amz-expires"])
    except (KeyError, ValueError):
        raise Rejected("X-Amz-Expires parameter is missing or not an integer")
    if not 0 <= expires <= 900:
        raise Rejected("X-Amz-Expires parameter out of range")
    try:
        date = dt.datetime.strptime(seen["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except (KeyError, ValueError):
        raise Rejected("X-Amz-Date parameter is missing or malformed")
    if now >= date + VALID_FOR:
        raise Rejected(f"X-Amz-Date parameter is expired ({VALID_FOR} after {date})")

    req = urllib.request.Request(url, headers={"x-k8s-aws-id": cluster_id, "accept": "application/json"})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as resp:
            status, data = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        raise Rejected(f"STS answered {e.code}: {e.read()[:300]!r}")
    except OSError as e:
        raise Rejected(f"error contacting STS: {e}")
    if status != 200:
        raise Rejected(f"STS answered {status}")
    try:
        result = json.loads(data)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
        return {"arn": result["Arn"], "account": result["Account"], "userid": result["UserId"],
                "accesskeyid": seen["x-amz-credential"].split("/")[0]}
    except (ValueError, KeyError) as e:
        raise Rejected(f"unexpected STS response: {e}")


def canonicalize(arn):
    """arn:aws:sts::A:assumed-role/NAME/SESSION → arn:aws:iam::A:role/NAME; user ARNs stay as they are."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise Rejected(f"bad ARN {arn!r}")
    _, partition, service, _, account, resource = parts
    if service == "sts" and resource.startswith("assumed-role/"):
        segs = resource.split("/")
        if len(segs) < 3:
            raise Rejected(f"bad assumed-role ARN {arn!r}")
        return f"arn:{partition}:iam::{account}:role/{segs[1]}", segs[-1]
    if service == "iam" and (resource.startswith("user/") or resource.startswith("role/")):
        if resource.startswith("role/"):
            # Roles are matched without their path.
            return f"arn:{partition}:iam::{account}:role/{resource.split('/')[-1]}", ""
        return arn, ""
    raise Rejected(f"unsupported ARN {arn!r}")


def parse_aws_auth(parser, data):
    """aws-auth's data as aws-iam-authenticator's own parser reads it (pkg/mapper/configmap.ParseMap, run by the
    awsauth-parse helper): {"users": [...], "roles": [...], "accounts": [...], "error": ...}. A block that does not
    parse yields what the parser made of it (a YAML error: nothing), as in EKS."""
    p = subprocess.run([parser], input=json.dumps(data), capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"awsauth-parse failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


def by_arn(mappings, key):
    """The authenticator's map store: keyed by the lowercased ARN, a later mapping of one ARN wins."""
    out = {}
    for m in mappings or []:
        out[str(m.get(key) or "").lower()] = m
    return out


POLICY_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
NODE_GROUPS = {"EC2_LINUX": ["system:bootstrappers", "system:nodes"], "EC2_WINDOWS": ["system:bootstrappers", "system:nodes", "eks:kube-proxy-windows"]}


class Mapper:
    def __init__(self, clusters, admin_token, ca_file, ec2_base, eks_base=None, parser=None):
        self.clusters = clusters
        self.parser = parser
        self.eks_base = eks_base or ec2_base
        self.admin_token = admin_token
        self.ctx = ssl.create_default_context(cafile=ca_file)
        self.ec2_base = ec2_base

    def aws_auth(self, cluster):
        url = self.clusters[cluster] + "/api/v1/namespaces/kube-system/configmaps/aws-auth"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
                return json.loads(r.read()).get("data") or {}
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return {}
            raise

    def private_dns_name(self, instance_id):
        import boto3  # the node-role template needs EC2, as in EKS

        ec2 = boto3.client("ec2", endpoint_url=self.ec2_base, region_name="us-east-1",
                           aws_access_key_id="authenticator", aws_secret_access_key="authenticator")
        res = ec2.describe_instances(InstanceIds=[instance_id])
        return res["Reservations"][0]["Instances"][0]["PrivateDnsName"]

    def expand(self, template, ident, session):
        out = template.replace("{{AccountID}}", ident["account"])
        out = out.replace("{{SessionNameRaw}}", session).replace("{{SessionName}}", session.replace("@", "-"))
        out = out.replace("{{AccessKeyID}}", ident["accesskeyid"])
        if "{{EC2PrivateDNSName}}" in out:
            out = out.replace("{{EC2PrivateDNSName}}", self.private_dns_name(session))
        return out

    def authz(self, cluster, canonical, ident):
        q = urllib.parse.urlencode({"arn": canonical, "id": ident["userid"].split(":")[0]})
        with urllib.request.urlopen(f"{self.eks_base}/_emu/eks/{cluster}/authz?{q}", timeout=10) as r:
            return json.loads(r.read())

    def from_entry(self, entry, ident, session):
        username = self.expand(entry["username"], ident, session)
        groups = list(entry.get("kubernetesGroups") or []) + NODE_GROUPS.get(entry["type"], [])
        for p in entry.get("accessPolicies") or []:
            if p["accessScope"]["type"] == "cluster" and p["policyArn"].startswith(POLICY_PREFIX):
                groups.append("eks-access-policy:" + p["policyArn"][len(POLICY_PREFIX):])
        return username, [self.expand(g, ident, session) for g in groups]

    def map(self, cluster, ident):
        canonical, session = canonicalize(ident["arn"])
        authz = self.authz(cluster, canonical, ident)
        if authz["entry"] is not None:
            username, groups = self.from_entry(authz["entry"], ident, session)
            return username, groups, canonical
        if authz["mode"] == "API":
            raise Rejected(f"no access entry for {canonical} (authentication mode API: aws-auth is not read)")
        parsed = parse_aws_auth(self.parser, self.aws_auth(cluster))
        key = canonical.lower()
        # As the authenticator's ConfigMapMapper.Map: a role mapping first, then a user mapping, then accounts.
        match = by_arn(parsed["roles"], "rolearn").get(key) or by_arn(parsed["users"], "userarn").get(key)
        if match is not None:
            username = match.get("username")
            if not isinstance(username, str) or not username:
                raise Rejected(f"{canonical} is mapped without a username")
            groups = match.get("groups") or []
            if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
                raise Rejected(f"{canonical} is mapped with invalid groups")
            return self.expand(username, ident, session), [self.expand(g, ident, session) for g in groups], canonical
        if ident["account"] in (parsed["accounts"] or []):
            return canonical, [], canonical
        raise Rejected(f"ARN is not mapped: {canonical}")


def make_handler(mapper, sts_base, log):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            m = re.fullmatch(r"/authenticate/([A-Za-z0-9_-]+)", urllib.parse.urlsplit(self.path).path)
            length = int(self.headers.get("Content-Length") or 0)
            try:
                review = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400)
                return
            status = {"authenticated": False, "error": f"unknown cluster path {self.path}"}
            if not (m and m.group(1) in mapper.clusters):
                log(f"rejected: request for unknown path {self.path}")
            else:
                cluster = m.group(1)
                try:
                    ident = verify_token(review.get("spec", {}).get("token", ""), cluster, sts_base)
                    username, groups, canonical = mapper.map(cluster, ident)
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": username,
                            "uid": f"aws-iam-authenticator:{ident['account']}:{ident['userid']}",
                            "groups": groups,
                            "extra": {"arn": [ident["arn"]], "canonicalArn": [canonical],
                                      "accessKeyId": [ident["accesskeyid"]]},
                        },
                    }
                    log(f"{cluster}: {canonical} -> {username} {groups}")
                except Rejected as e:
                    status = {"authenticated": False, "error": str(e)}
                    log(f"{cluster}: rejected: {e}")
                except Exception as e:  # an authenticator must fail closed
                    status = {"authenticated": False, "error": f"internal error: {e}"}
                    log(f"{cluster}: error: {e!r}")
            out = json.dumps({"apiVersion": review.get("apiVersion", "authentication.k8s.io/v1"),
                              "kind": "TokenReview", "status": status}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sts", required=True)
    p.add_argument("--ec2", required=True)
    p.add_argument("--eks", help="the EKS emulator (default: the --ec2 URL)")
    p.add_argument("--cluster", action="append", default=[], help="NAME=https://127.0.0.1:PORT")
    p.add_argument("--admin-token", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--awsauth-parser", required=True, help="the awsauth-parse helper (tests/stack/build-k8s.sh)")
    a = p.parse_args()
    clusters = dict(c.split("=", 1) for c in a.cluster)
    mapper = Mapper(clusters, a.admin_token, a.ca, a.ec2, a.eks, a.awsauth_parser)

    def log(msg):
        print(f"[authenticator] {msg}", file=sys.stderr, flush=True)

    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(mapper, a.sts, log))
    print(f"authenticator listening on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
