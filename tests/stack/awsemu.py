"""Local AWS emulator: moto server plus what stock moto lacks for EKS authentication.

- Presigned STS GetCallerIdentity (the EKS bearer token's URL) is routed to STS and its SigV4 query signature
  is verified with botocore against the secret moto holds for that access key (IAM user keys and assumed-role
  session credentials), including every signed header (x-k8s-aws-id) and the date window. The answer names
  the key's owner, or is a 403 (SignatureDoesNotMatch, InvalidClientTokenId, ExpiredToken).
- /_emu/eks/<name> (POST) points a moto EKS cluster at a real local API server (endpoint + CA), so the
  function's DescribeCluster path is exactly the production one.
- IAM GetAccountAuthorizationDetails with Filter User, Role and/or Group is paged as real IAM pages it (MaxItems
  honoured, at most 1000 a page, counting the items of every list, Marker), which stock moto ignores; so call
  counts here hold on real IAM.
  /_emu/iam/page-cap (POST {"cap": N}) lowers the page size further, to exercise paging with few users.
- /_emu/iam/bulk-users (POST {"prefix", "count", "tagged", "tag_key", "tag_value"}) creates many users
  in-process (benchmarks).
- /_emu/calls (GET) and /_emu/calls/reset (POST): per-service/action request counts, for tests and benchmarks.
- EventBridge across accounts (events_org.py): a rule's delivery to another account's bus is refused unless the
  bus's policy admits the sender (an account, or its organization by aws:PrincipalOrgID), counted as
  events:CrossAccountRefused; AWS::Events::EventBusPolicy in CloudFormation.
- EKS authentication modes and access entries (eks_access.py): accessConfig on CreateCluster /
  DescribeCluster / UpdateClusterConfig, the nine access-entry calls, tags on entries;
  /_emu/eks/<name>/authz?arn=A&id=I (GET) tells the local authenticator the mode and the entry that applies.
- /_emu/writes (GET): the access-entry writes since the last calls reset, in order: [action, cluster, principal].
- /_emu/inflight (GET): EKS calls in flight now and at most since the last calls reset.
- /_emu/latency (POST {"eks": 50, "iam": 20}): milliseconds of delay before every answer of that service
  (benchmarks at a realistic round trip); {} turns it off.
- /_emu/faults (POST {"label": "iam:GetUser", "status": 400, "code": "Throttling", "message": "...",
  "count": N}) answers the next N calls of that action with that error, in the service's own error shape
  (count -1: until cleared; an empty body clears every fault). Lets tests show that only IAM's own
  NoSuchEntity means "user gone" and that throttling or access denied removes nothing.

Run: python awsemu.py --port N   (binds 127.0.0.1 only)
"""

import argparse
import base64
import eks_access
import events_org
import datetime as dt
import io
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from xml.sax.saxutils import escape

from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

ALLOWED_QUERY_KEYS = {
    "action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
    "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders",
}
# STS accepts a presigned GetCallerIdentity for 15 minutes after X-Amz-Date, whatever X-Amz-Expires says
# (that is what makes 60-second EKS tokens valid for 15 minutes).
STS_PRESIGN_WINDOW = dt.timedelta(minutes=15)
CLOCK_SKEW = dt.timedelta(minutes=5)

CALLS = Counter()
CALLS_LOCK = threading.Lock()


def _count(key):
    with CALLS_LOCK:
        CALLS[key] += 1


# A rule's delivery to another account's bus that the bus's policy refuses is counted, not delivered.
events_org.install()


def _count_refusals():
    with events_org._LOCK:
        refused, events_org.REFUSED[:] = list(events_org.REFUSED), []
    for _ in refused:
        _count("events:CrossAccountRefused")


# The access-entry writes in the order they were answered: (action, cluster, principal ARN), for tests of
# the order a client writes in (a path change: the new entry before the old one goes).
WRITES = []
WRITE_ACTIONS = {"CreateAccessEntry", "UpdateAccessEntry", "DeleteAccessEntry", "AssociateAccessPolicy",
                 "DisassociateAccessPolicy"}


def _lookup_secret(access_key_id):
    """(secret, session_token or None, arn, user_id, account) for a key moto issued, or None."""
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    for account in list(sts_backends.keys()):
        for partition in list(sts_backends[account].keys()):
            role = sts_backends[account][partition].get_assumed_role_from_access_key(access_key_id)
            if role:
                return role.secret_access_key, role.session_token, role.arn, role.user_id, role.account_id
    for account in list(iam_backends.keys()):
        for partition in list(iam_backends[account].keys()):
            backend = iam_backends[account][partition]
            user = backend.get_user_from_access_key_id(access_key_id)
            if user:
                for key in backend.list_access_keys(user.name):
                    if key.access_key_id == access_key_id and key.status == "Active":
                        return key.secret_access_key, None, user.arn, user.id, user.account_id
    return None


def _error(start_response, status, code, message, want_json):
    if want_json:
        body = json.dumps({"Error": {"Code": code, "Message": message, "Type": "Sender"}}).encode()
        ctype = "application/json"
    else:
        body = (
            f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>emu</RequestId></ErrorResponse>"
        ).encode()
        ctype = "text/xml"
    start_response(f"{status} {'Forbidden' if status == 403 else 'Bad Request'}",
                   [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def presigned_sts(environ, start_response):
    """Verifies and answers a presigned GetCallerIdentity request."""
    _count("sts:GetCallerIdentity(presigned)")
    want_json = "application/json" in environ.get("HTTP_ACCEPT", "")
    raw_query = environ.get("QUERY_STRING", "")
    pairs = urllib.parse.parse_qsl(raw_query, keep_blank_values=True)
    params = {}
    for k, v in pairs:
        if k.lower() not in ALLOWED_QUERY_KEYS or k in params:
            return _error(start_response, 400, "InvalidParameter", f"unexpected or repeated parameter {k}", want_json)
        params[k] = v
    if params.get("Action") != "GetCallerIdentity":
        return _error(start_response, 400, "InvalidAction", "only GetCallerIdentity may be presigned here", want_json)
    try:
        akid, date_s, region, service, term = params["X-Amz-Credential"].split("/")
        amz_date = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        expires = int(params["X-Amz-Expires"])
        signed_headers = params["X-Amz-SignedHeaders"].split(";")
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError) as e:
        return _error(start_response, 400, "IncompleteSignature", f"malformed presigned query: {e}", want_json)
    if service != "sts" or term != "aws4_request" or date_s != params["X-Amz-Date"][:8]:
        return _error(start_response, 403, "SignatureDoesNotMatch", "bad credential scope", want_json)
    found = _lookup_secret(akid)
    if not found:
        return _error(start_response, 403, "InvalidClientTokenId", "The security token included in the request is invalid.", want_json)
    secret, session_token, arn, user_id, account = found
    if session_token is not None and params.get("X-Amz-Security-Token") != session_token:
        return _error(start_response, 403, "InvalidClientTokenId", "The security token included in the request is invalid.", want_json)
    now = dt.datetime.now(dt.timezone.utc)
    if not 0 <= expires <= 900 or now > amz_date + STS_PRESIGN_WINDOW or amz_date > now + CLOCK_SKEW:
        return _error(start_response, 403, "ExpiredToken", "The security token included in the request is expired", want_json)

    # Rebuild the request as the client signed it: same host, same query without the signature, and the
    # values of every signed header as received now.
    host = environ.get("HTTP_HOST", "")
    unsigned_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in pairs if k != "X-Amz-Signature"
    )
    headers = {}
    for h in signed_headers:
        if h == "host":
            continue
        value = environ.get("HTTP_" + h.upper().replace("-", "_"))
        if value is None:
            return _error(start_response, 403, "SignatureDoesNotMatch", f"signed header {h} is missing", want_json)
        headers[h] = value
    scheme = environ.get("wsgi.url_scheme", "http")
    req = AWSRequest(method="GET", url=f"{scheme}://{host}/?{unsigned_query}", headers=headers, data=b"")
    req.context["timestamp"] = params["X-Amz-Date"]
    auth = SigV4QueryAuth(Credentials(akid, secret, session_token), "sts", region, expires=expires)
    if sorted(auth.headers_to_sign(req).keys()) != sorted(signed_headers):
        return _error(start_response, 403, "SignatureDoesNotMatch", "signed headers differ from the request's", want_json)
    canonical = auth.canonical_request(req)
    expected = auth.signature(auth.string_to_sign(req, canonical), req)
    if expected != signature:
        return _error(start_response, 403, "SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you provided.", want_json)

    result = {"Arn": arn, "UserId": user_id, "Account": account}
    if want_json:
        body = json.dumps({"GetCallerIdentityResponse": {"GetCallerIdentityResult": result,
                                                           "ResponseMetadata": {"RequestId": "emu"}}}).encode()
        ctype = "application/json"
    else:
        body = (
            '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
            f"<Arn>{arn}</Arn><UserId>{user_id}</UserId><Account>{account}</Account></GetCallerIdentityResult>"
            "<ResponseMetadata><RequestId>emu</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
        ).encode()
        ctype = "text/xml"
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def set_eks_cluster(name, body, region):
    if body.get("authenticationMode"):
        eks_access.set_mode(name, body["authenticationMode"])
    if body.get("reset_entries"):
        with eks_access.LOCK:
            eks_access.ENTRIES.pop(name, None)
    from moto.eks.models import eks_backends

    backend = eks_backends[DEFAULT_ACCOUNT_ID][region]
    if name not in backend.clusters:
        backend.create_cluster(
            name=name,
            role_arn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/eks-cluster",
            resources_vpc_config={"subnetIds": [], "securityGroupIds": []},
            version="1.37",
        )
    c = backend.clusters[name]
    c.endpoint = body["endpoint"]
    c.certificate_authority = {"data": base64.b64encode(body["ca_pem"].encode()).decode()}
    c.status = "ACTIVE"


IAM_PAGE_CAP = [1000]
# Per-service delay before each answer, in seconds ({"eks": 0.05}): benchmarks at a realistic round trip
# (tens of milliseconds) instead of the emulator's ~1 ms. Requests are served on threads, so concurrent
# calls wait side by side, as they would on a real service.
LATENCY = {}
# EKS calls being answered right now, and the most at once since the last /_emu/calls/reset: the
# concurrency a client reached.
IN_FLIGHT = {"now": 0, "max": 0}
IN_FLIGHT_LOCK = threading.Lock()
FAULTS = {}
FAULTS_LOCK = threading.Lock()


def take_fault(label):
    with FAULTS_LOCK:
        f = FAULTS.get(label)
        if not f:
            return None
        if f["count"] > 0:
            f["count"] -= 1
            if f["count"] == 0:
                del FAULTS[label]
        return f


def fault_response(start_response, fault, label=""):
    """The service's own error shape: EKS (restJson1) or IAM (query protocol, XML)."""
    if label.startswith(("eks:", "events:", "scheduler:")):
        return json_response(start_response, int(fault.get("status", 400)),
                             {"message": fault.get("message", "injected")}, fault["code"])
    body = (
        '<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type>'
        f"<Code>{escape(fault['code'])}</Code><Message>{escape(fault.get('message', 'injected'))}</Message></Error>"
        "<RequestId>emu-fault</RequestId></ErrorResponse>"
    ).encode()
    status = int(fault.get("status", 400))
    start_response(f"{status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]
IAM_DEFAULT_MAX_ITEMS = 100
# PutEvents entries still to fail (see App.put_events_failing_some).
EVENTS_FAIL_ENTRIES = [0]


def json_response(start_response, status, obj, error_code=None):
    body = json.dumps(obj).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if error_code:
        headers.append(("x-amzn-ErrorType", error_code))
    start_response(f"{status} {'OK' if status < 300 else 'Error'}", headers)
    return [body]


def _iam_backend():
    from moto.iam.models import iam_backends

    return iam_backends[DEFAULT_ACCOUNT_ID]["aws"]


def _tags_xml(tags):
    return "".join(f"<member><Key>{escape(t['Key'])}</Key><Value>{escape(t['Value'])}</Value></member>" for t in tags)


def _user_detail(backend, u, groups_of):
    groups = "".join(f"<member>{escape(g)}</member>" for g in groups_of.get(u.name, []))
    return (f"<member><Path>{escape(u.path)}</Path><UserName>{escape(u.name)}</UserName><UserId>{u.id}</UserId>"
            f"<Arn>{escape(u.arn)}</Arn><CreateDate>{u.create_date.strftime('%Y-%m-%dT%H:%M:%SZ')}</CreateDate>"
            f"<UserPolicyList/><GroupList>{groups}</GroupList><AttachedManagedPolicies/>"
            f"<Tags>{_tags_xml(backend.tagger.list_tags_for_resource(u.arn)['Tags'])}</Tags></member>")


def _group_detail(g):
    """A GroupDetail as the IAM API reference shows it (the function reads the name; policies are empty here)."""
    created = g.create_date.strftime('%Y-%m-%dT%H:%M:%SZ')
    return (f"<member><Path>{escape(g.path)}</Path><GroupName>{escape(g.name)}</GroupName><GroupId>{g.id}</GroupId>"
            f"<Arn>{escape(g.arn)}</Arn><CreateDate>{created}</CreateDate>"
            "<GroupPolicyList/><AttachedManagedPolicies/></member>")


def _role_detail(backend, r):
    created = r.create_date.strftime('%Y-%m-%dT%H:%M:%SZ')
    return (f"<member><Path>{escape(r.path)}</Path><RoleName>{escape(r.name)}</RoleName><RoleId>{r.id}</RoleId>"
            f"<Arn>{escape(r.arn)}</Arn><CreateDate>{created}</CreateDate>"
            f"<AssumeRolePolicyDocument>{escape(urllib.parse.quote(r.assume_role_policy_document or ''))}"
            "</AssumeRolePolicyDocument><InstanceProfileList/><RolePolicyList/><AttachedManagedPolicies/>"
            f"<Tags>{_tags_xml(r.tags)}</Tags></member>")  # moto keeps a role's tags on the role


# Roles AWS keeps for itself: IAM Identity Center's permission-set roles and service-linked roles. Nobody but
# AWS may tag, untag, delete or change them; real IAM answers 400 UnmodifiableEntity "Cannot perform the
# operation on the protected role 'NAME' - this role is only modifiable by AWS" (as reported from real accounts
# in rebuy-de/aws-nuke #441 and #1028). Only Identity Center itself creates or deletes its roles: the harness
# plays it through /_emu/iam/sso-role.
PROTECTED_ROLE_PATHS = ("/aws-reserved/sso.amazonaws.com/", "/aws-service-role/")
ROLE_WRITES = {"iam:TagRole", "iam:UntagRole", "iam:DeleteRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
               "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy", "iam:DeleteRolePolicy"}


def protected_role(label, form):
    params = dict(form)
    if label == "iam:CreateRole" and (params.get("Path") or "/").startswith(PROTECTED_ROLE_PATHS[0]):
        return {"code": "AccessDenied", "status": 403,
                "message": "The path /aws-reserved/sso.amazonaws.com/ is reserved for AWS IAM Identity Center"}
    if label not in ROLE_WRITES:
        return None
    role = next((r for r in _iam_backend().roles.values() if r.name == params.get("RoleName")), None)
    if role is None or not role.path.startswith(PROTECTED_ROLE_PATHS):
        return None
    return {"code": "UnmodifiableEntity", "status": 400,
            "message": f"Cannot perform the operation on the protected role '{role.name}' - this role is only modifiable by AWS"}


# EventBridge Scheduler schedule expressions (user guide, "Schedule types on EventBridge Scheduler"): one-time
# `at(yyyy-mm-ddThh:mm:ss)`, `rate(value unit)`, `cron(...)`; a target needs an ARN and a role ARN, and a
# schedule a flexible time window. moto accepts anything; the real service answers ValidationException.
SCHEDULE_EXPRESSION = re.compile(r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\)")


def schedule_refused(environ, region):
    raw = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return 400, "ValidationException", "the request body is not JSON"
    if not SCHEDULE_EXPRESSION.fullmatch(body.get("ScheduleExpression") or ""):
        return 400, "ValidationException", f"Invalid Schedule Expression {body.get('ScheduleExpression')!r}."
    target = body.get("Target") or {}
    if not target.get("Arn") or not target.get("RoleArn"):
        return 400, "ValidationException", "Target needs Arn and RoleArn."
    if not (body.get("FlexibleTimeWindow") or {}).get("Mode"):
        return 400, "ValidationException", "FlexibleTimeWindow is required."
    from moto.scheduler.models import scheduler_backends
    group = body.get("GroupName") or "default"
    if group not in scheduler_backends[DEFAULT_ACCOUNT_ID][region].schedule_groups:
        return 404, "ResourceNotFoundException", f"Schedule group {group} does not exist."
    return None


def sso_role(method, body):
    """Identity Center (through AWSServiceRoleForSSO) makes or removes a permission set's role in the account:
    POST {"permissionSet", "suffix", "region"?} creates AWSReservedSSO_<set>_<suffix> under
    /aws-reserved/sso.amazonaws.com/[<region>/]; DELETE {"name"} deletes it."""
    backend = _iam_backend()
    if method == "DELETE":
        backend.delete_role(body["name"])
        return {}
    region = body.get("region")
    path = "/aws-reserved/sso.amazonaws.com/" + (f"{region}/" if region else "")
    name = f"AWSReservedSSO_{body['permissionSet']}_{body['suffix']}"
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRoleWithSAML", "sts:TagSession"],
                                                                "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE"}}]})
    r = backend.create_role(role_name=name, assume_role_policy_document=trust, path=path, permissions_boundary=None,
                            description="", tags=[], max_session_duration="43200", linked_service=None)
    return {"RoleName": r.name, "Arn": r.arn, "RoleId": r.id}


def authorization_details(form, start_response, filters):
    """GetAccountAuthorizationDetails(Filter any of User, Group, Role) paged like real IAM: MaxItems counts the
    items of every list in the page (users, then groups, then roles), at most 1000, with a Marker; each user's
    GroupList, each group's name and each role's Path and Tags, as the IAM API reference's UserDetail,
    GroupDetail and RoleDetail show them."""
    params = dict(form)
    max_items = min(int(params.get("MaxItems") or IAM_DEFAULT_MAX_ITEMS), 1000, IAM_PAGE_CAP[0])
    _count(f"iam:GetAccountAuthorizationDetails(MaxItems={params.get('MaxItems')})")
    start = int(params.get("Marker") or 0)
    backend = _iam_backend()
    items = []
    if "User" in filters:
        items += [("user", u) for u in sorted(backend.users.values(), key=lambda u: u.name)]
    if "Group" in filters:
        items += [("group", g) for g in sorted(backend.groups.values(), key=lambda g: g.name)]
    if "Role" in filters:
        items += [("role", r) for r in sorted(backend.roles.values(), key=lambda r: r.name)]
    page = items[start:start + max_items]
    truncated = start + max_items < len(items)
    groups_of = {}
    for g in backend.groups.values():
        for u in g.users:
            groups_of.setdefault(u.name, []).append(g.name)
    users = "".join(_user_detail(backend, u, groups_of) for kind, u in page if kind == "user")
    roles = "".join(_role_detail(backend, r) for kind, r in page if kind == "role")
    groups = "".join(_group_detail(g) for kind, g in page if kind == "group")
    marker = f"<Marker>{start + max_items}</Marker>" if truncated else ""
    body = (
        '<GetAccountAuthorizationDetailsResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">'
        f"<GetAccountAuthorizationDetailsResult><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{marker}"
        f"<UserDetailList>{users}</UserDetailList><GroupDetailList>{groups}</GroupDetailList>"
        f"<RoleDetailList>{roles}</RoleDetailList><Policies/>"
        "</GetAccountAuthorizationDetailsResult><ResponseMetadata><RequestId>emu</RequestId></ResponseMetadata>"
        "</GetAccountAuthorizationDetailsResponse>"
    ).encode()
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def bulk_users(body, region):
    backend = _iam_backend()
    prefix, count, tagged = body.get("prefix", "bulk"), int(body["count"]), int(body.get("tagged", 0))
    for i in range(count):
        tags = [{"Key": body.get("tag_key", "eks-cluster-admin"), "Value": body.get("tag_value", "true")}] if i < tagged else []
        backend.create_user(region_name=region, user_name=f"{prefix}{i:05d}", path="/", tags=tags)


def bulk_roles(body):
    """Roles people assume, `tagged` of them carrying the admin tag, under `path`."""
    backend = _iam_backend()
    prefix, count, tagged = body.get("prefix", "role"), int(body["count"]), int(body.get("tagged", 0))
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]})
    for i in range(count):
        tags = [{"Key": body.get("tag_key", "eks-cluster-admin"), "Value": "true"}] if i < tagged else []
        backend.create_role(role_name=f"{prefix}{i:05d}", assume_role_policy_document=trust,
                            path=body.get("path", "/"), permissions_boundary=None, description="", tags=tags,
                            max_session_duration="3600", linked_service=None)


def _classify(environ):
    """A short 'service:Action' label for counting."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = m.group(1) if m else "?"
    action = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("Action", [None])[0]
    if action is None and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            environ["emu.form"] = urllib.parse.parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
            action = dict(environ["emu.form"]).get("Action")
    if action is None and environ.get("HTTP_X_AMZ_TARGET"):  # JSON protocols (EventBridge: AWSEvents.PutEvents)
        action = environ["HTTP_X_AMZ_TARGET"].rsplit(".", 1)[-1]
    if action is None and service == "scheduler":  # restJson: the verb and the path name the action
        kind = "ScheduleGroup" if "/schedule-groups" in environ.get("PATH_INFO", "") else "Schedule"
        verb = {"GET": "Get", "POST": "Create", "PUT": "Update", "DELETE": "Delete"}.get(environ.get("REQUEST_METHOD"), "?")
        action = f"{verb}{kind}"
    if action is None and service == "eks":
        routed = eks_access.route(environ)
        environ["emu.eks"] = routed
        action = routed[0] if routed else environ.get("PATH_INFO", "")
    return f"{service}:{action}"


class App:
    def __init__(self, region):
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.region = region

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        if path.startswith("/_emu/"):
            return self.admin(environ, start_response, path)
        if "X-Amz-Credential=" in query and "Action=GetCallerIdentity" in query:
            return presigned_sts(environ, start_response)
        label = _classify(environ)
        if not label.startswith("eks:"):
            return self._answer(environ, start_response, label)
        with IN_FLIGHT_LOCK:
            IN_FLIGHT["now"] += 1
            IN_FLIGHT["max"] = max(IN_FLIGHT["max"], IN_FLIGHT["now"])
        try:
            return self._answer(environ, start_response, label)
        finally:
            with IN_FLIGHT_LOCK:
                IN_FLIGHT["now"] -= 1

    def _answer(self, environ, start_response, label):
        delay = LATENCY.get(label.split(":", 1)[0])
        if delay:
            time.sleep(delay)
        fault = take_fault(label)
        if fault:
            _count(f"{label}(fault {fault['code']})")
            return fault_response(start_response, fault, label)
        if environ.get("emu.eks"):
            _count(label)
            return self.eks(environ, start_response, *environ["emu.eks"])
        if label in ("scheduler:CreateSchedule", "scheduler:UpdateSchedule"):
            refused = schedule_refused(environ, self.region)
            if refused:
                _count(f"{label}(refused)")
                status, code, message = refused
                return json_response(start_response, status, {"message": message}, code)
        if label == "events:PutEvents" and EVENTS_FAIL_ENTRIES[0] > 0:
            _count(label)
            return self.put_events_failing_some(environ, start_response)
        form = environ.get("emu.form") or []
        refused = protected_role(label, form)
        if refused:
            _count(f"{label}(refused {refused['code']})")
            return fault_response(start_response, refused, label)
        filters = sorted(v for k, v in form if k.startswith("Filter.member"))
        if label == "iam:GetAccountAuthorizationDetails" and filters and set(filters) <= {"User", "Role", "Group"}:
            return authorization_details(form, start_response, filters)
        _count(label)
        return self.moto(environ, start_response)

    def put_events_failing_some(self, environ, start_response):
        """PutEvents where the first N entries (counted over calls, /_emu/events/fail-entries) fail with
        InternalFailure, as a call that succeeds with FailedEntryCount > 0 does on EventBridge; the others go
        to moto, and the result entries keep the request's order."""
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)) or b"{}")
        entries = body.get("Entries", [])
        n = min(EVENTS_FAIL_ENTRIES[0], len(entries))
        EVENTS_FAIL_ENTRIES[0] -= n
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "injected by the emulator"}] * n
        if entries[n:]:
            rest = json.dumps({**body, "Entries": entries[n:]}).encode()
            environ = {**environ, "wsgi.input": io.BytesIO(rest), "CONTENT_LENGTH": str(len(rest))}
            _, _, parsed, _ = self._moto_json(environ)
            results += (parsed or {}).get("Entries", [])
        return json_response(start_response, 200, {"FailedEntryCount": n, "Entries": results})

    def _moto_json(self, environ):
        """Calls moto and returns (status line, headers, parsed JSON body or None, raw body)."""
        got = {}

        def capture(status, headers, exc_info=None):
            got["status"], got["headers"] = status, headers
        raw = b"".join(self.moto(environ, capture))
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return got["status"], got["headers"], parsed, raw

    def eks(self, environ, start_response, action, args):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return json_response(start_response, 400, {"message": "body is not JSON"}, "InvalidParameterException")
        qs = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        query = {k: (v if k == "tagKeys" else v[-1]) for k, v in qs.items()}
        try:
            if action == "DescribeCluster":
                status, headers, parsed, rawout = self._moto_json(environ)
                if parsed and "cluster" in parsed:
                    parsed["cluster"]["accessConfig"] = {"authenticationMode": eks_access.mode_of(args[0]),
                                                         "bootstrapClusterCreatorAdminPermissions": True}
                    return json_response(start_response, 200, parsed)
                start_response(status, headers)
                return [rawout]
            if action == "CreateCluster":
                mode = (body.get("accessConfig") or {}).get("authenticationMode") or "CONFIG_MAP"
                status, headers, parsed, rawout = self._moto_json(environ)
                if status.startswith("200") and parsed and "cluster" in parsed:
                    eks_access.set_mode(parsed["cluster"]["name"], mode)
                    parsed["cluster"]["accessConfig"] = {"authenticationMode": mode}
                    return json_response(start_response, 200, parsed)
                start_response(status, headers)
                return [rawout]
            if action == "UpdateClusterConfig":
                if "accessConfig" not in body:
                    return self.moto(environ, start_response)
                eks_access._cluster(self.region, args[0])
                mode = (body.get("accessConfig") or {}).get("authenticationMode")
                eks_access.update_mode(args[0], mode)
                return json_response(start_response, 200, {"update": {
                    "id": str(uuid.uuid4()), "status": "Successful", "type": "AccessConfigUpdate",
                    "params": [{"type": "AuthenticationMode", "value": mode}],
                    "createdAt": dt.datetime.now(dt.timezone.utc).timestamp(), "errors": []}})
            status, out = eks_access.handle(action, args, environ, self.region, body, query)
            if action in WRITE_ACTIONS:
                principal = body.get("principalArn") if action == "CreateAccessEntry" else args[1]
                with CALLS_LOCK:
                    WRITES.append([action, args[0], principal])
            return json_response(start_response, status, out)
        except eks_access.EksError as e:
            return json_response(start_response, e.status, {"message": e.message}, e.code)

    def admin(self, environ, start_response, path):
        method = environ["REQUEST_METHOD"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        out = {}
        if path == "/_emu/calls" and method == "GET":
            _count_refusals()
            with CALLS_LOCK:
                out = dict(CALLS)
        elif path == "/_emu/calls/reset" and method == "POST":
            _count_refusals()
            with CALLS_LOCK:
                CALLS.clear()
                WRITES.clear()
            with IN_FLIGHT_LOCK:
                IN_FLIGHT["max"] = IN_FLIGHT["now"]
        elif path == "/_emu/writes" and method == "GET":
            with CALLS_LOCK:
                out = {"writes": list(WRITES)}
        elif path == "/_emu/inflight" and method == "GET":
            with IN_FLIGHT_LOCK:
                out = dict(IN_FLIGHT)
        elif path == "/_emu/latency" and method == "POST":
            LATENCY.clear()
            LATENCY.update({k: float(v) / 1000 for k, v in body.items()})
        elif path == "/_emu/iam/page-cap" and method == "POST":
            IAM_PAGE_CAP[0] = int(body.get("cap", 1000))
        elif path == "/_emu/faults" and method == "POST":
            with FAULTS_LOCK:
                if body.get("label"):
                    FAULTS[body["label"]] = {"count": int(body.get("count", -1)), **body}
                else:
                    FAULTS.clear()
        elif path == "/_emu/events/fail-entries" and method == "POST":
            EVENTS_FAIL_ENTRIES[0] = int(body.get("count", 0))
        elif path == "/_emu/iam/sso-role" and method in ("POST", "DELETE"):
            out = sso_role(method, body)
        elif path == "/_emu/iam/bulk-users" and method == "POST":
            bulk_users(body, self.region)
        elif path == "/_emu/iam/bulk-roles" and method == "POST":
            bulk_roles(body)
        elif path.startswith("/_emu/eks/") and path.endswith("/authz") and method == "GET":
            q = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
            out = eks_access.authz(path[len("/_emu/eks/"):-len("/authz")], q.get("arn", ""), q.get("id", ""))
        elif path.startswith("/_emu/eks/") and method == "POST":
            set_eks_cluster(path[len("/_emu/eks/"):], body, body.get("region", self.region))
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"unknown emulator route\n"]
        data = json.dumps(out).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--region", default="us-east-1")
    a = p.parse_args()
    server = make_server("127.0.0.1", a.port, App(a.region), threaded=True)
    print(f"awsemu listening on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
