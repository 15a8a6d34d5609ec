// The function role allows exactly what the code calls. The list of AWS operations is read from the code
// (every SDK fluent call `client.<operation>()` in src/), each is mapped to the IAM actions AWS authorizes for
// it, including the dependent actions AWS documents, and each action is simulated against the template's
// role with the request context the real call carries (request tags, resource tags, principal ARN, entry
// type, groups, policy ARN and scope, region). A new call with no row here, a row whose call is gone, a call
// the role cannot make, or a statement tightened too far fails this test.
//
// Sources for the actions and their context keys: the Service Authorization Reference, "Actions, resources,
// and condition keys for Amazon EKS" (CreateAccessEntry: resource cluster, dependent action eks:TagResource;
// condition keys aws:RequestTag/${TagKey}, aws:TagKeys, eks:accessEntryType, eks:kubernetesGroups,
// eks:principalArn, eks:username; the entry actions act on the access-entry resource and take
// aws:ResourceTag/${TagKey}; Associate/DisassociateAccessPolicy add eks:policyArn, eks:accessScope,
// eks:namespaces) and "… for AWS Identity and Access Management" (GetUser and ListGroupsForUser on the
// user; GetRole on the role; GetAccountAuthorizationDetails on "*"). The EKS token is a presigned sts:GetCallerIdentity, which needs no
// permission ("GetCallerIdentity … No permissions are required", STS API reference), so it has no row.

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { parse as parseYaml } from './cfn-yaml.mjs'

const repo = new URL('../../', import.meta.url).pathname
const ACCOUNT = '111122223333'
const REGION = 'us-east-1'
const FUNCTION_ROLE = `arn:aws:iam::${ACCOUNT}:role/eks-admin-sync-function`
const DEPLOYMENT = 'default'
const CLUSTERS = ['prod', 'staging']
const INVOKER = `arn:aws:iam::${ACCOUNT}:role/eks-admin-sync-expiry-invoker`
const SCHEDULE = `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/eks-admin-sync/eks-admin-sync-${DEPLOYMENT}-expiry`

function rustFiles(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n)
    return statSync(p).isDirectory() ? rustFiles(p) : p.endsWith('.rs') ? [p] : []
  })
}
const sources = rustFiles(join(repo, 'src')).map((p) => readFileSync(p, 'utf8'))

/** Every SDK operation the code calls: `client.op()…send()` in one statement, however it is split over lines
 * (`client.clone()` and other methods of the client that send nothing are not operations). */
export function operationsInCode(texts) {
  const ops = new Set()
  for (const t of texts) {
    for (const m of t.matchAll(/\bclient\s*\.\s*([a-z][a-z0-9_]*)\s*\(\s*\)[^;{}]*?\.send\(\)/g)) ops.add(m[1])
  }
  return ops
}

/** A `pub const NAME: &str = "…";` of the code. */
function constant(name) {
  for (const t of sources) {
    const m = t.match(new RegExp(`pub const ${name}: &str = "([^"]*)";`))
    if (m) return m[1]
  }
  throw new Error(`constant ${name} not found in src/`)
}

// The marks exactly as the code writes them.
const MARK = constant('MARK_TAG')
const USER_ID = constant('USER_ID_TAG')
const TAG_KEY = constant('TAG_KEY_TAG')
const SOURCE = constant('SOURCE_TAG')
const GROUP_MARK = `${constant('GROUP_MARK_PREFIX')}${DEPLOYMENT}`
const ADMIN_TAG = constant('DEFAULT_TAG_KEY')

/** The template's value with Ref, Sub, Join and Split resolved as CloudFormation would. */
function resolver(params) {
  const refs = { 'AWS::Region': REGION, 'AWS::AccountId': ACCOUNT, 'AWS::Partition': 'aws', 'AWS::StackName': 'eks-admin-sync', ExpiryScheduleGroup: 'eks-admin-sync', 'ExpiryInvokerRole.Arn': INVOKER, ...params }
  const resolve = (v) => {
    if (Array.isArray(v)) return v.map(resolve)
    if (v && typeof v === 'object') {
      if ('Ref' in v) {
        if (!(v.Ref in refs)) throw new Error(`unresolved Ref ${v.Ref}`)
        return refs[v.Ref]
      }
      if ('Fn::Sub' in v) return v['Fn::Sub'].replace(/\$\{([^}]+)\}/g, (_, k) => {
        if (!(k in refs)) throw new Error(`unresolved Sub ${k}`)
        return refs[k]
      })
      if ('Fn::GetAtt' in v) {
        const key = Array.isArray(v['Fn::GetAtt']) ? v['Fn::GetAtt'].join('.') : v['Fn::GetAtt']
        if (!(key in refs)) throw new Error(`unresolved GetAtt ${key}`)
        return refs[key]
      }
      if ('Fn::Join' in v) { const [d, parts] = v['Fn::Join']; return resolve(parts).flat().join(d) }
      if ('Fn::Split' in v) { const [d, s] = v['Fn::Split']; return resolve(s).split(d) }
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]))
    }
    return v
  }
  return resolve
}

const template = parseYaml(readFileSync(join(repo, 'template.yaml'), 'utf8'))
function roleDocuments(params) {
  const resolve = resolver({ EventBus: 'default', ...params })
  // The policies that grant AWS API calls of the code (the last one is for logs and dead letters).
  return template.Resources.FunctionRole.Properties.Policies
    .filter((p) => ['read-iam-users', 'manage-cluster-access', 'announce-audit-events', 'expiry-wakeup'].includes(p.PolicyName))
    .map((p) => ({ name: p.PolicyName, policy: resolve(p.PolicyDocument) }))
}

async function allowed(docs, { action, resource, context }) {
  const r = await runSimulation({
    request: {
      principal: FUNCTION_ROLE,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: { 'aws:RequestedRegion': REGION, 'aws:PrincipalArn': FUNCTION_ROLE, ...context }
    },
    identityPolicies: docs,
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }, {})
  if (r.resultType === 'error') throw new Error(`${action}: ${JSON.stringify(r.errors)}`)
  return r.overallResult
}

const ADMIN_POLICY = 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy'
const user = (n) => `arn:aws:iam::${ACCOUNT}:user/${n}`
const role = (n) => `arn:aws:iam::${ACCOUNT}:role/${n}`
const cluster = (c) => `arn:aws:eks:${REGION}:${ACCOUNT}:cluster/${c}`
const entry = (c, n) => `arn:aws:eks:${REGION}:${ACCOUNT}:access-entry/${c}/user/${ACCOUNT}/${n}/0aa1b2c3-d4e5-f6a7-b8c9-d0e1f2a3b4c5`
const marks = { [MARK]: DEPLOYMENT, [USER_ID]: 'AIDAEXAMPLEALICE01', [TAG_KEY]: ADMIN_TAG, [SOURCE]: `tag:${ADMIN_TAG}` }
const requestTags = (tags) => ({ 'aws:TagKeys': Object.keys(tags), ...Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:RequestTag/${k}`, v])) })
const resourceTags = (tags) => Object.fromEntries(Object.entries(tags).map(([k, v]) => [`aws:ResourceTag/${k}`, v]))
const groups = ['eks-admins', GROUP_MARK]

// One row per SDK operation: the IAM requests one real call of it makes, as (action, resource, context).
// `policies` are the configured access policies of the grant ({arn, scope}).
const CALLS = {
  get_user: () => [{ action: 'iam:GetUser', resource: user('alice') }],
  get_role: () => [{ action: 'iam:GetRole', resource: role('team/team-admin') }],
  list_groups_for_user: () => [{ action: 'iam:ListGroupsForUser', resource: user('alice') }],
  get_account_authorization_details: () => [{ action: 'iam:GetAccountAuthorizationDetails', resource: '*' }],
  describe_cluster: (c) => [{ action: 'eks:DescribeCluster', resource: cluster(c) }],
  list_access_entries: (c) => [{ action: 'eks:ListAccessEntries', resource: cluster(c) }],
  // The access policies EKS offers: no resource-level permissions ("*", Service Authorization Reference).
  list_access_policies: () => [{ action: 'eks:ListAccessPolicies', resource: '*' }],
  // Anyone's entry is read (the function must see other people's entries to leave them alone).
  describe_access_entry: (c) => [{ action: 'eks:DescribeAccessEntry', resource: entry(c, 'viewer') }],
  list_associated_access_policies: (c) => [{ action: 'eks:ListAssociatedAccessPolicies', resource: entry(c, 'viewer') }],
  // For a user, a role under a path and an Identity Center role (the principal ARN keeps its path).
  create_access_entry: (c) => [
    [user('alice'), 'alice'],
    [role('team/team-admin'), 'team-admin:{{SessionName}}'],
    [role('aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Admin_0123456789abcdef'), 'AWSReservedSSO_Admin_0123456789abcdef:{{SessionName}}']
  ].flatMap(([principal, username]) => {
    const entryKeys = { 'eks:accessEntryType': 'STANDARD', 'eks:principalArn': principal, 'eks:username': username, 'eks:kubernetesGroups': groups }
    return [
      { action: 'eks:CreateAccessEntry', resource: cluster(c), context: { ...requestTags(marks), ...entryKeys } },
      // The dependent action: the new entry has no tags yet.
      { action: 'eks:TagResource', resource: entry(c, 'alice'), context: { ...requestTags(marks), ...entryKeys }, dependent: true }
    ]
  }),
  associate_access_policy: (c, policies) => policies.map((p) => ({
    action: 'eks:AssociateAccessPolicy',
    resource: entry(c, 'alice'),
    context: {
      ...resourceTags(marks),
      'eks:policyArn': p.arn,
      'eks:accessScope': p.namespaces ? 'namespace' : 'cluster',
      ...(p.namespaces ? { 'eks:namespaces': p.namespaces } : {})
    }
  })),
  update_access_entry: (c) => [{ action: 'eks:UpdateAccessEntry', resource: entry(c, 'alice'), context: { ...resourceTags(marks), 'eks:username': 'alice', 'eks:kubernetesGroups': groups } }],
  // Only on an entry that carries the marks: restoring the ones a tool removed (here the user id).
  tag_resource: (c) => [{ action: 'eks:TagResource', resource: entry(c, 'alice'), context: { ...resourceTags({ [MARK]: DEPLOYMENT }), ...requestTags(marks) } }],
  disassociate_access_policy: (c) => [{ action: 'eks:DisassociateAccessPolicy', resource: entry(c, 'alice'), context: { ...resourceTags(marks), 'eks:policyArn': 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy' } }],
  delete_access_entry: (c) => [{ action: 'eks:DeleteAccessEntry', resource: entry(c, 'alice'), context: resourceTags(marks) }],
  // Every audit record as an event on the configured bus (resource: the bus).
  put_events: () => [{ action: 'events:PutEvents', resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/default` }],
  // The expiry wake-up (Service Authorization Reference for EventBridge Scheduler: the schedule resource;
  // Create/UpdateSchedule also pass the target's role, iam:PassRole with iam:PassedToService).
  get_schedule: () => [{ action: 'scheduler:GetSchedule', resource: SCHEDULE }],
  delete_schedule: () => [{ action: 'scheduler:DeleteSchedule', resource: SCHEDULE }],
  create_schedule: () => [
    { action: 'scheduler:CreateSchedule', resource: SCHEDULE },
    { action: 'iam:PassRole', resource: INVOKER, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' }, dependent: true }
  ],
  update_schedule: () => [
    { action: 'scheduler:UpdateSchedule', resource: SCHEDULE },
    { action: 'iam:PassRole', resource: INVOKER, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' }, dependent: true }
  ]
}

test('every SDK call in src/ has a row here, and every row a call', () => {
  const inCode = operationsInCode(sources)
  assert.ok(inCode.size >= 10, `found only ${[...inCode]}: the scan is broken`)
  const missing = [...inCode].filter((op) => !(op in CALLS))
  assert.deepEqual(missing, [], 'a call with no IAM mapping: add its actions (and dependent actions) to CALLS')
  const stale = Object.keys(CALLS).filter((op) => !inCode.has(op))
  assert.deepEqual(stale, [], 'a mapping whose call is gone from src/: remove it')
})

test('the scan finds calls split over lines', () => {
  const ops = operationsInCode(['self.client.get_user().user_name(n).send()', 'x\n    .client\n    .delete_access_entry()\n    .send()\n', 'client.not_a_call', 'let c = self.client.clone(); c.send()'])
  assert.deepEqual([...ops].sort(), ['delete_access_entry', 'get_user'])
})

const CONFIGS = [
  { name: 'default policy', params: { AccessPolicyNames: ['AmazonEKSClusterAdminPolicy'] }, policies: [{ arn: ADMIN_POLICY }] },
  {
    name: 'a namespace-scoped policy beside a cluster-scoped one',
    params: { AccessPolicyNames: ['AmazonEKSViewPolicy', 'AmazonEKSAdminPolicy=team-a team-b'] },
    policies: [
      { arn: 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy' },
      { arn: 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy', namespaces: ['team-a', 'team-b'] }
    ]
  }
]

for (const cfg of CONFIGS) {
  test(`the role allows every call the code makes, dependent actions included (${cfg.name})`, async () => {
    const docs = roleDocuments({ ClusterNames: CLUSTERS, DeploymentId: DEPLOYMENT, ...cfg.params })
    for (const op of operationsInCode(sources)) {
      for (const c of CLUSTERS) {
        for (const req of CALLS[op](c, cfg.policies)) {
          assert.equal(await allowed(docs, req), 'Allowed', `${op} → ${req.action}${req.dependent ? ' (dependent)' : ''} on ${req.resource}`)
        }
      }
    }
  })
}

// The same requests, each changed in one way the code never does: each must be refused.
test('each call is refused when changed in one way the code never does', async () => {
  const docs = roleDocuments({ ClusterNames: CLUSTERS, DeploymentId: DEPLOYMENT, AccessPolicyNames: ['AmazonEKSClusterAdminPolicy'] })
  const [create, tagOnCreate] = CALLS.create_access_entry('prod')
  const refused = [
    ['create for another account\'s user', { ...create, context: { ...create.context, 'eks:principalArn': 'arn:aws:iam::444455556666:user/alice' } }],
    ['create for a service-linked role', { ...create, context: { ...create.context, 'eks:principalArn': role('aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS') } }],
    ['create for another account\'s role', { ...create, context: { ...create.context, 'eks:principalArn': 'arn:aws:iam::444455556666:role/team-admin' } }],
    ['create a node entry for a role', { ...create, context: { ...create.context, 'eks:principalArn': role('Node'), 'eks:accessEntryType': 'EC2_LINUX' } }],
    ['read another account\'s role', { action: 'iam:GetRole', resource: 'arn:aws:iam::444455556666:role/team-admin' }],
    ['list access policies from another region', { action: 'eks:ListAccessPolicies', resource: '*', context: { 'aws:RequestedRegion': 'eu-west-1' } }],
    ['put events on another bus', { action: 'events:PutEvents', resource: `arn:aws:events:${REGION}:${ACCOUNT}:event-bus/other` }],
    ['another schedule in the group', { action: 'scheduler:CreateSchedule', resource: `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/eks-admin-sync/other` }],
    ['a schedule in another group', { action: 'scheduler:UpdateSchedule', resource: `arn:aws:scheduler:${REGION}:${ACCOUNT}:schedule/default/eks-admin-sync-${DEPLOYMENT}-expiry` }],
    ['pass the invoker role to another service', { action: 'iam:PassRole', resource: INVOKER, context: { 'iam:PassedToService': 'lambda.amazonaws.com' } }],
    ['pass its own role to the scheduler', { action: 'iam:PassRole', resource: FUNCTION_ROLE, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' } }],
    ['create without the group mark', { ...create, context: { ...create.context, 'eks:kubernetesGroups': ['eks-admins'] } }],
    ['create with another deployment\'s group mark only', { ...create, context: { ...create.context, 'eks:kubernetesGroups': ['eks-admin-sync:other'] } }],
    ['create with a tag key beyond the marks', { ...create, context: { ...create.context, ...requestTags({ ...marks, owner: 'me' }) } }],
    ['tag-on-create with a tag key beyond the marks', { ...tagOnCreate, context: { ...tagOnCreate.context, ...requestTags({ ...marks, owner: 'me' }) } }],
    ['tag-on-create with another deployment\'s mark', { ...tagOnCreate, context: { ...tagOnCreate.context, ...requestTags({ ...marks, [MARK]: 'other' }) } }],
    ['tag a foreign entry with a foreign key', { action: 'eks:TagResource', resource: entry('prod', 'viewer'), context: requestTags({ team: 'x' }) }],
    ['untag anything', { action: 'eks:UntagResource', resource: entry('prod', 'alice'), context: { ...resourceTags(marks), 'aws:TagKeys': [MARK] } }],
    ['update dropping the group mark', { ...CALLS.update_access_entry('prod')[0], context: { ...resourceTags(marks), 'eks:kubernetesGroups': ['eks-admins'] } }],
    ['update an unmarked entry', { ...CALLS.update_access_entry('prod')[0], context: { 'eks:kubernetesGroups': groups } }],
    ['delete an unmarked entry', { ...CALLS.delete_access_entry('prod')[0], context: {} }],
    ['a call on an unmanaged cluster', { ...CALLS.delete_access_entry('dev')[0] }],
    ['a policy that is not configured', { ...CALLS.associate_access_policy('prod', [{ arn: ADMIN_POLICY }])[0], context: { ...resourceTags(marks), 'eks:policyArn': 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy' } }]
  ]
  for (const [what, req] of refused) {
    assert.equal(await allowed(docs, req), 'ImplicitlyDenied', what)
  }
})
