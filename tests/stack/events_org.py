"""EventBridge across accounts, as AWS does it and moto does not (imported by awsemu.py, which calls install()).

- A rule whose target is another account's event bus delivers only what that bus's resource-based policy lets
  the sending account put (EventBridge User Guide, "Permissions for event buses": without a statement allowing
  events:PutEvents to the sender, the event is not delivered). moto delivers every such event; here a statement
  counts when it allows events:PutEvents (or events:*) to "*" or to the sending account, with no condition or
  with StringEquals on aws:PrincipalOrgID naming the sender's organization (from the emulated AWS
  Organizations). A condition on anything else is not evaluated, and its statement allows nothing. A refused
  delivery is counted as `events:CrossAccountRefused` in /_emu/calls.
- AWS::Events::EventBusPolicy in CloudFormation (moto has no model for it): its statement is put on the bus.
"""

import threading

from moto.core.common_models import CloudFormationModel
from moto.events import models as events_models

REFUSED = []
_LOCK = threading.Lock()


def organization_of(account):
    """The id of the organization the emulated AWS Organizations puts `account` in, if any."""
    from moto.organizations.models import organizations_backends

    owner = organizations_backends.master_accounts.get(account)
    if owner is None:
        return None
    master, partition = owner
    org = organizations_backends[master][partition].org
    return org.id if org else None


def _actions(stmt):
    a = stmt.get("Action")
    return a if isinstance(a, list) else [a]


def _principal_admits(principal, account):
    if principal == "*" or principal == {"AWS": "*"}:
        return True
    aws = principal.get("AWS") if isinstance(principal, dict) else None
    names = aws if isinstance(aws, list) else [aws]
    return any(n in (account, f"arn:aws:iam::{account}:root") for n in names if n)


def _condition_holds(condition, account):
    if not condition:
        return True
    if set(condition) != {"StringEquals"} or set(condition["StringEquals"]) != {"aws:PrincipalOrgID"}:
        return False
    want = condition["StringEquals"]["aws:PrincipalOrgID"]
    org = organization_of(account)
    return org is not None and (org == want or (isinstance(want, list) and org in want))


def bus_admits(bus, account):
    """Whether the bus's policy lets `account` put events on it."""
    for stmt in bus._statements.values():
        d = stmt.describe()
        if d.get("Effect") != "Allow":
            continue
        if not any(a in ("events:PutEvents", "events:*") for a in _actions(d)):
            continue
        if _principal_admits(d.get("Principal"), account) and _condition_holds(d.get("Condition"), account):
            return True
    return False


def _refused_targets(rule):
    """The rule's targets that are another account's bus whose policy does not admit the rule's account."""
    out = []
    for t in rule.targets:
        parts = t["Arn"].split(":")
        if len(parts) < 6 or parts[2] != "events" or not parts[5].startswith("event-bus/"):
            continue
        region, account = parts[3], parts[4]
        if account == rule.account_id:
            continue
        bus = events_models.events_backends[account][region].event_buses.get(parts[5][len("event-bus/"):])
        if bus is None or not bus_admits(bus, rule.account_id):
            out.append(t)
    return out


def _send_checked(original):
    def send_to_targets(self, original_event, transform_input=True):
        refused = _refused_targets(self) if self.event_pattern.matches_event(original_event) else []
        if not refused:
            return original(self, original_event, transform_input)
        with _LOCK:
            REFUSED.extend(t["Arn"] for t in refused)
            kept, self.targets = self.targets, [t for t in self.targets if t not in refused]
            try:
                return original(self, original_event, transform_input)
            finally:
                self.targets = kept

    return send_to_targets


def _bus_name(props):
    """EventBusName as written, or (moto resolves a Ref to a bus of the stack into the bus itself) its name."""
    name = props.get("EventBusName") or "default"
    return name if isinstance(name, str) else name.name


class EventBusPolicy(CloudFormationModel):
    """AWS::Events::EventBusPolicy: one statement (StatementId + Statement) on a bus of the stack's account."""

    # moto files every model under the service its module names (moto.<service>.…).
    __module__ = "moto.events.emulated"

    def __init__(self, bus, sid):
        self.bus, self.sid = bus, sid

    @property
    def physical_resource_id(self):
        return self.sid

    @staticmethod
    def cloudformation_name_type():
        return "StatementId"

    @staticmethod
    def cloudformation_type():
        return "AWS::Events::EventBusPolicy"

    @classmethod
    def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs):
        props = cloudformation_json["Properties"]
        backend = events_models.events_backends[account_id][region_name]
        bus = backend.describe_event_bus(_bus_name(props))
        sid = props["StatementId"]
        bus.add_policy({"Statement": [{**props["Statement"], "Sid": sid}]})
        return cls(bus, sid)

    @classmethod
    def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
        props = cloudformation_json["Properties"]
        backend = events_models.events_backends[account_id][region_name]
        backend.describe_event_bus(_bus_name(props)).remove_statement(props["StatementId"])


def install():
    events_models.Rule.send_to_targets = _send_checked(events_models.Rule.send_to_targets)
