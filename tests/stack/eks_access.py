"""EKS authentication modes and access entries for the local AWS emulator (moto has neither).

Shapes, routes and error codes follow botocore's EKS model (2017-11-01):
- accessConfig.authenticationMode on clusters: set by CreateCluster (default CONFIG_MAP, as the API does),
  returned by DescribeCluster, changed by UpdateClusterConfig only towards API.
- The nine access-entry calls: Create/Describe/List/Update/DeleteAccessEntry, Associate/
  DisassociateAccessPolicy, ListAssociatedAccessPolicies, ListAccessPolicies; plus Tag/Untag/
  ListTagsForResource on an entry's accessEntryArn. The principal ARN (and the policy ARN) travel
  URL-encoded in the path, so routes are matched on the raw request URI, one segment at a time.
- Errors as EKS sends them (restJson1: x-amzn-ErrorType header, {"message"} body): 404
  ResourceNotFoundException, 400 InvalidRequestException (wrong authentication mode), 400
  InvalidParameterException (invalid principal, system: groups, reserved usernames, unknown policy), 409
  ResourceInUseException (entry exists).
- An entry remembers the unique id of the IAM principal it was made for: a user deleted and re-created
  under the same ARN does not inherit it (EKS keeps the principal's id), which `authz` honours.

`authz(cluster, arn, user_id)` is what the local authenticator asks: the cluster's mode and the entry that
applies to a caller, if any.
"""

import datetime as dt
import json
import re
import threading
import urllib.parse
import uuid

MODES_ORDER = ["CONFIG_MAP", "API_AND_CONFIG_MAP", "API"]
POLICY_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
# What ListAccessPolicies offers, and all AssociateAccessPolicy accepts: the names the EKS User Guide's "Review
# access policy permissions" page lists in its `aws eks list-access-policies` example and describes (more exist on
# AWS; a name not here is refused as EKS refuses a policy it does not have).
POLICIES = ["AmazonAIOpsAssistantPolicy", "AmazonARCRegionSwitchScalingPolicy", "AmazonEKSAdminPolicy",
            "AmazonEKSAdminViewPolicy", "AmazonEKSAutoNodePolicy", "AmazonEKSClusterAdminPolicy",
            "AmazonEKSEditPolicy", "AmazonEKSViewPolicy"]
ENTRY_TYPES = {"STANDARD", "EC2_LINUX", "EC2_WINDOWS", "FARGATE_LINUX", "EC2", "HYBRID_LINUX", "HYPERPOD_LINUX"}
RESERVED_USERNAME_PREFIXES = ("system:", "eks:", "aws:", "amazon:", "iam:")
MAX_PAGE = 100

LOCK = threading.RLock()
MODES = {}  # cluster -> authentication mode
ENTRIES = {}  # cluster -> {principalArn: entry}


class EksError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _now():
    return dt.datetime.now(dt.timezone.utc).timestamp()


def _eks_backend(region):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.eks.models import eks_backends

    return eks_backends[DEFAULT_ACCOUNT_ID][region]


def _cluster(region, name):
    c = _eks_backend(region).clusters.get(name)
    if c is None:
        raise EksError(404, "ResourceNotFoundException", f"No cluster found for name: {name}.")
    return c


def mode_of(name):
    with LOCK:
        return MODES.get(name, "CONFIG_MAP")


def set_mode(name, mode):
    if mode not in MODES_ORDER:
        raise EksError(400, "InvalidParameterException", f"unknown authenticationMode {mode!r}")
    with LOCK:
        MODES[name] = mode


def update_mode(name, mode):
    """UpdateClusterConfig's accessConfig: only ever towards API."""
    with LOCK:
        current = mode_of(name)
        if mode not in MODES_ORDER:
            raise EksError(400, "InvalidParameterException", f"unknown authenticationMode {mode!r}")
        if MODES_ORDER.index(mode) < MODES_ORDER.index(current):
            raise EksError(400, "InvalidParameterException",
                           f"Unsupported authentication mode update from {current} to {mode}")
        if mode == current:
            raise EksError(400, "InvalidParameterException", f"Cluster is already in {mode} mode")
        # One step at a time: CONFIG_MAP -> API directly is refused (EKS user guide, "Change authentication
        # mode to use access entries": CONFIG_MAP -> API_AND_CONFIG_MAP -> API; real EKS answers 400
        # InvalidParameterException "Unsupported authentication mode update from CONFIG_MAP to API").
        if MODES_ORDER.index(mode) - MODES_ORDER.index(current) > 1:
            raise EksError(400, "InvalidParameterException",
                           f"Unsupported authentication mode update from {current} to {mode}")
        MODES[name] = mode


def _need_api_mode(name):
    if mode_of(name) == "CONFIG_MAP":
        raise EksError(400, "InvalidRequestException",
                       "The cluster's authentication mode must be set to one of [API, API_AND_CONFIG_MAP] to perform "
                       "this operation.")


def _principal(arn):
    """(kind, unique id) of an existing IAM user or role with exactly this ARN, or raise as EKS does: an STS
    (assumed-role) ARN is "The principalArn parameter format is not valid"; an IAM ARN of no principal is
    "The specified principalArn is invalid: invalid principal." (both 400 InvalidParameterException, as
    reported from real EKS)."""
    if ":sts::" in (arn or "") or not (arn or "").startswith("arn:"):
        raise EksError(400, "InvalidParameterException", "The principalArn parameter format is not valid")
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.iam.models import iam_backends

    backend = iam_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for u in backend.users.values():
        if u.arn == arn:
            return "user", u.id
    for r in backend.roles.values():
        if r.arn == arn:
            return "role", r.id
    raise EksError(400, "InvalidParameterException", "The specified principalArn is invalid: invalid principal.")


def _check_username(username):
    if username.lower().startswith(RESERVED_USERNAME_PREFIXES):
        raise EksError(400, "InvalidParameterException",
                       f"username {username!r} cannot start with system:, eks:, aws:, amazon: or iam:")


def _check_groups(groups):
    for g in groups:
        if g.startswith("system:"):
            raise EksError(400, "InvalidParameterException", f"kubernetesGroup {g!r} cannot start with system:")


# AWS tag keys and values (the EKS AccessEntry Tag and the AWS API Tag type): letters, digits and spaces as UTF-8
# may hold them, and + - = . _ : / @; keys 1-128 characters, values at most 256; no aws: prefix. A comma, which
# IAM allows in group and permission-set names, is refused.
TAG_KEY = re.compile(r"^(?![aA][wW][sS]:)[\w\s.:/=+\-@]{1,128}$")
TAG_VALUE = re.compile(r"^[\w\s.:/=+\-@]{0,256}$")


def _check_tags(tags):
    if not isinstance(tags, dict) or len(tags) > 50:
        raise EksError(400, "InvalidParameterException", "tags must be a map of at most 50 tags")
    for k, v in tags.items():
        if not isinstance(k, str) or not isinstance(v, str) or not TAG_KEY.match(k) or not TAG_VALUE.match(v):
            raise EksError(400, "InvalidParameterException", f"invalid tag {k!r}={v!r}")


def _entries(name):
    return ENTRIES.setdefault(name, {})


def _entry(name, principal):
    e = _entries(name).get(principal)
    if e is None:
        raise EksError(404, "ResourceNotFoundException", f"The specified principalArn could not be found: {principal}")
    return e


def _view(e):
    return {k: e[k] for k in ("clusterName", "principalArn", "kubernetesGroups", "accessEntryArn", "createdAt",
                              "modifiedAt", "tags", "username", "type")}


def _default_username(arn, kind):
    if kind == "role":
        account = arn.split(":")[4]
        return f"arn:aws:sts::{account}:assumed-role/{arn.rsplit('/', 1)[-1]}/{{{{SessionName}}}}"
    return arn


def create_entry(region, name, body):
    c = _cluster(region, name)
    _need_api_mode(name)
    arn = body.get("principalArn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise EksError(400, "InvalidParameterException", "principalArn is required")
    kind, pid = _principal(arn)
    etype = body.get("type") or "STANDARD"
    if etype not in ENTRY_TYPES:
        raise EksError(400, "InvalidParameterException", f"The type {etype} is not supported")
    groups = body.get("kubernetesGroups") or []
    username = body.get("username")
    tags = body.get("tags") or {}
    _check_tags(tags)
    if etype == "STANDARD":
        _check_groups(groups)
        if username is not None:
            _check_username(username)
        else:
            username = _default_username(arn, kind)
    else:
        if username is not None or groups:
            raise EksError(400, "InvalidParameterException",
                           f"username and kubernetesGroups cannot be set for type {etype}")
        if kind != "role":
            raise EksError(400, "InvalidParameterException", f"type {etype} needs an IAM role")
        username = "system:node:{{EC2PrivateDNSName}}"
        groups = ["system:nodes"]
    with LOCK:
        if arn in _entries(name):
            raise EksError(409, "ResourceInUseException", "The specified access entry resource is already in use on this cluster.")
        account = c.arn.split(":")[4]
        now = _now()
        path = arn.split(":", 5)[5]
        e = {"clusterName": name, "principalArn": arn, "kubernetesGroups": list(groups),
             "accessEntryArn": f"arn:aws:eks:{region}:{account}:access-entry/{name}/{path.split('/')[0]}/{account}/"
                               f"{path.rsplit('/', 1)[-1]}/{uuid.uuid4()}",
             "createdAt": now, "modifiedAt": now, "tags": dict(tags), "username": username, "type": etype,
             "principalId": pid, "policies": {}}
        _entries(name)[arn] = e
        return {"accessEntry": _view(e)}


def describe_entry(region, name, principal):
    _cluster(region, name)
    _need_api_mode(name)
    with LOCK:
        return {"accessEntry": _view(_entry(name, principal))}


def _page(items, query, what):
    try:
        max_results = int(query.get("maxResults", MAX_PAGE))
    except ValueError:
        raise EksError(400, "InvalidParameterException", "maxResults must be a number")
    if not 1 <= max_results <= MAX_PAGE:
        raise EksError(400, "InvalidParameterException", f"maxResults must be between 1 and {MAX_PAGE}")
    start = 0
    if query.get("nextToken"):
        try:
            start = int(query["nextToken"].split(":", 1)[1]) if query["nextToken"].startswith(f"{what}:") else -1
        except ValueError:
            start = -1
        if start < 0 or start > len(items):
            raise EksError(400, "InvalidParameterException", "The nextToken is invalid")
    page = items[start:start + max_results]
    nxt = f"{what}:{start + max_results}" if start + max_results < len(items) else None
    return page, nxt


def list_entries(region, name, query):
    _cluster(region, name)
    _need_api_mode(name)
    policy = query.get("associatedPolicyArn")
    with LOCK:
        arns = sorted(a for a, e in _entries(name).items() if policy is None or policy in e["policies"])
    page, nxt = _page(arns, query, "entries")
    out = {"accessEntries": page}
    if nxt:
        out["nextToken"] = nxt
    return out


def update_entry(region, name, principal, body):
    _cluster(region, name)
    _need_api_mode(name)
    with LOCK:
        e = _entry(name, principal)
        if e["type"] != "STANDARD" and ("username" in body or "kubernetesGroups" in body):
            raise EksError(400, "InvalidParameterException", f"cannot update username or groups of a {e['type']} entry")
        if "kubernetesGroups" in body:
            _check_groups(body["kubernetesGroups"] or [])
            e["kubernetesGroups"] = list(body["kubernetesGroups"] or [])
        if body.get("username") is not None:
            _check_username(body["username"])
            e["username"] = body["username"]
        e["modifiedAt"] = _now()
        return {"accessEntry": _view(e)}


def delete_entry(region, name, principal):
    _cluster(region, name)
    _need_api_mode(name)
    with LOCK:
        _entry(name, principal)
        del _entries(name)[principal]
    return {}


def associate(region, name, principal, body):
    _cluster(region, name)
    _need_api_mode(name)
    policy = body.get("policyArn")
    scope = body.get("accessScope") or {}
    if policy not in [POLICY_PREFIX + p for p in POLICIES]:
        raise EksError(400, "InvalidParameterException", f"The policyArn {policy} is invalid.")
    if scope.get("type") not in ("cluster", "namespace"):
        raise EksError(400, "InvalidParameterException", "accessScope.type must be cluster or namespace")
    namespaces = scope.get("namespaces") or []
    if (scope["type"] == "namespace") != bool(namespaces):
        raise EksError(400, "InvalidParameterException", "namespaces are needed with, and only with, namespace scope")
    with LOCK:
        e = _entry(name, principal)
        # EKS: policies only on STANDARD entries, and on EC2 (Auto Mode) entries; anything else is 400
        # InvalidParameterException (not InvalidRequestException, which is the wrong-mode answer).
        if e["type"] not in ("STANDARD", "EC2"):
            raise EksError(400, "InvalidParameterException",
                           'The AssociateAccessPolicy operation can only be performed on Access Entries with a type '
                           'of "STANDARD".')
        now = _now()
        old = e["policies"].get(policy)
        e["policies"][policy] = {"policyArn": policy,
                                 "accessScope": {"type": scope["type"], "namespaces": list(namespaces)},
                                 "associatedAt": old["associatedAt"] if old else now, "modifiedAt": now}
        return {"clusterName": name, "principalArn": principal, "associatedAccessPolicy": e["policies"][policy]}


def disassociate(region, name, principal, policy):
    _cluster(region, name)
    _need_api_mode(name)
    with LOCK:
        e = _entry(name, principal)
        if policy not in e["policies"]:
            raise EksError(404, "ResourceNotFoundException", f"The policy {policy} is not associated with {principal}.")
        del e["policies"][policy]
    return {}


def list_associated(region, name, principal, query):
    _cluster(region, name)
    _need_api_mode(name)
    with LOCK:
        e = _entry(name, principal)
        items = [e["policies"][p] for p in sorted(e["policies"])]
    page, nxt = _page(items, query, "policies")
    out = {"clusterName": name, "principalArn": principal, "associatedAccessPolicies": page}
    if nxt:
        out["nextToken"] = nxt
    return out


def list_policies(query):
    items = [{"name": p, "arn": POLICY_PREFIX + p} for p in POLICIES]
    page, nxt = _page(items, query, "access-policies")
    out = {"accessPolicies": page}
    if nxt:
        out["nextToken"] = nxt
    return out


def _entry_by_arn(resource_arn):
    with LOCK:
        for entries in ENTRIES.values():
            for e in entries.values():
                if e["accessEntryArn"] == resource_arn:
                    return e
    raise EksError(404, "NotFoundException", f"resource {resource_arn} not found")


def tags(method, resource_arn, query, body):
    e = _entry_by_arn(resource_arn)
    with LOCK:
        if method == "GET":
            return {"tags": dict(e["tags"])}
        if method == "POST":
            _check_tags({**e["tags"], **(body.get("tags") or {})})
            e["tags"].update(body.get("tags") or {})
            return {}
        for k in query.get("tagKeys", []):
            e["tags"].pop(k, None)
        return {}


def authz(cluster, arn, user_id):
    """What the local authenticator needs for a caller: the mode and the entry that applies (or None).

    Users are matched on their ARN and unique id; roles on their name, whatever the entry's path (the
    authenticator only knows the assumed role's name, and names are unique in an account), and on the role's
    unique id: EKS binds an entry to the principal's id when it is created, so a role deleted and re-created
    under the same name does not inherit its entry (EKS user guide, "Create access entries": recreating the
    principal needs a new entry)."""
    with LOCK:
        mode = mode_of(cluster)
        found = None
        if mode != "CONFIG_MAP":
            for e in ENTRIES.get(cluster, {}).values():
                p = e["principalArn"]
                if ":user/" in arn and p.lower() == arn.lower() and e["principalId"] == user_id:
                    found = e
                elif ":role/" in arn and ":role/" in p and p.split(":")[4] == arn.split(":")[4] \
                        and p.rsplit("/", 1)[-1].lower() == arn.rsplit("/", 1)[-1].lower() \
                        and e["principalId"] == user_id:
                    found = e
        view = None
        if found:
            view = {**_view(found), "accessPolicies": [found["policies"][p] for p in sorted(found["policies"])]}
        return {"mode": mode, "entry": view}


def _segments(environ):
    """The request path's segments, each URL-decoded on its own (an ARN's '/' arrives as %2F)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or urllib.parse.quote(environ.get("PATH_INFO", ""))
    path = raw.split("?", 1)[0]
    return [urllib.parse.unquote(s) for s in path.split("/")[1:]]


def route(environ):
    """The EKS action this request is, with its path arguments, or None when it is moto's to answer."""
    method = environ.get("REQUEST_METHOD")
    seg = _segments(environ)
    if len(seg) >= 3 and seg[0] == "clusters" and seg[2] == "access-entries":
        name, rest = seg[1], seg[3:]
        if not rest:
            return ("CreateAccessEntry" if method == "POST" else "ListAccessEntries"), (name,)
        if len(rest) == 1:
            return {"GET": "DescribeAccessEntry", "POST": "UpdateAccessEntry",
                    "DELETE": "DeleteAccessEntry"}.get(method, "?"), (name, rest[0])
        if len(rest) == 2 and rest[1] == "access-policies":
            return ("AssociateAccessPolicy" if method == "POST" else "ListAssociatedAccessPolicies"), (name, rest[0])
        if len(rest) == 3 and rest[1] == "access-policies":
            return "DisassociateAccessPolicy", (name, rest[0], rest[2])
    if seg == ["access-policies"]:
        return "ListAccessPolicies", ()
    if len(seg) == 2 and seg[0] == "tags" and ":access-entry/" in seg[1]:
        return {"GET": "ListTagsForResource", "POST": "TagResource", "DELETE": "UntagResource"}[method], (seg[1],)
    if len(seg) == 3 and seg[0] == "clusters" and seg[2] == "update-config" and method == "POST":
        return "UpdateClusterConfig", (seg[1],)
    if seg == ["clusters"] and method == "POST":
        return "CreateCluster", ()
    if len(seg) == 2 and seg[0] == "clusters" and method == "GET":
        return "DescribeCluster", (seg[1],)
    return None


def handle(action, args, environ, region, body, query):
    """Answers an access-entry call: (status, response dict). Raises EksError."""
    if action == "CreateAccessEntry":
        return 200, create_entry(region, args[0], body)
    if action == "ListAccessEntries":
        return 200, list_entries(region, args[0], query)
    if action == "DescribeAccessEntry":
        return 200, describe_entry(region, *args)
    if action == "UpdateAccessEntry":
        return 200, update_entry(region, *args, body)
    if action == "DeleteAccessEntry":
        return 200, delete_entry(region, *args)
    if action == "AssociateAccessPolicy":
        return 200, associate(region, *args, body)
    if action == "ListAssociatedAccessPolicies":
        return 200, list_associated(region, *args, query)
    if action == "DisassociateAccessPolicy":
        return 200, disassociate(region, *args)
    if action == "ListAccessPolicies":
        return 200, list_policies(query)
    if action in ("ListTagsForResource", "TagResource", "UntagResource"):
        return 200, tags(environ["REQUEST_METHOD"], args[0], query, body)
    raise EksError(400, "InvalidRequestException", f"unsupported action {action}")


def error_body(e):
    return json.dumps({"message": e.message}).encode()
