// Every attack on the grant path from issue 11, evaluated offline against the shipped policies with an IAM
// policy evaluator (@cloud-copilot/iam-simulate: identity policies, SCPs, permissions boundaries, resource
// and trust policies, all condition operators). Each attack must be denied; the platform principals and the
// deployer must still be able to do their jobs. Run: `npm ci && node --test` here (make test does).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { parse as parseYaml } from './cfn-yaml.mjs'

const repo = new URL('../../', import.meta.url)
const load = (p) => JSON.parse(readFileSync(new URL(p, repo), 'utf8'))

const ACCOUNT = '111122223333'
const TAG = 'eks-cluster-admin'
const EXPIRY = `${TAG}-expires`
const PLATFORM = `arn:aws:iam::${ACCOUNT}:role/PlatformTeamAdmin`
const PLATFORM_SSO = `arn:aws:iam::${ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_PlatformTeam_0123456789abcdef`
const DEPLOYER = `arn:aws:iam::${ACCOUNT}:role/eks-admin-sync-deployer`
// An administrator of the member account (AdministratorAccess), and one delegated with the boundary.
const ACCOUNT_ADMIN = `arn:aws:iam::${ACCOUNT}:role/AccountAdmin`
const DELEGATED = `arn:aws:iam::${ACCOUNT}:role/DelegatedIamAdmin`
// A member-account admin's look-alike of the platform role: same name, other account; or a new role whose
// name merely starts like it.
const LOOKALIKES = [
  `arn:aws:iam::444455556666:role/PlatformTeamAdmin`,
  `arn:aws:iam::${ACCOUNT}:role/PlatformTeamAdmin2`,
  `arn:aws:iam::${ACCOUNT}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_PlatformTeam_ffffffffffffffff`
]

const BOUNDARY_ARN = `arn:aws:iam::${ACCOUNT}:policy/eks-admin-sync-boundary`
const FUNCTION = `arn:aws:lambda:us-east-1:${ACCOUNT}:function:eks-admin-sync`
const FUNCTION_ROLE = `arn:aws:iam::${ACCOUNT}:role/eks-admin-sync-function`
const RULE = `arn:aws:events:us-east-1:${ACCOUNT}:rule/eks-admin-sync-FunctionIamUserChanges-1A2B3C`
const QUEUE = `arn:aws:sqs:us-east-1:${ACCOUNT}:eks-admin-sync-dead-letters`
const ALICE = `arn:aws:iam::${ACCOUNT}:user/alice` // carries the tag
const CLUSTER = `arn:aws:eks:us-east-1:${ACCOUNT}:cluster/prod`
const ENTRY = `arn:aws:eks:us-east-1:${ACCOUNT}:access-entry/prod/user/${ACCOUNT}/alice/0aa1b2c3-d4e5-f6a7-b8c9-d0e1f2a3b4c5`
const MARKED = { 'aws:ResourceTag/eks-admin-sync': 'default' }
const BOB = `arn:aws:iam::${ACCOUNT}:user/bob` // does not
const ADMIN_GROUP = `arn:aws:iam::${ACCOUNT}:group/eks-cluster-admins`
const INVOKER = `arn:aws:iam::${ACCOUNT}:role/eks-admin-sync-expiry-invoker`
const SCHEDULE_ARN = `arn:aws:scheduler:us-east-1:${ACCOUNT}:schedule/eks-admin-sync/mine`

const adminAccess = { name: 'AdministratorAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }
const fullAccessScp = { name: 'FullAWSAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }
const scps = [
  { orgIdentifier: 'r-root', policies: [fullAccessScp] },
  {
    orgIdentifier: ACCOUNT,
    policies: [
      fullAccessScp,
      { name: 'protect-admin-tag', policy: load('infra/policies/scp-protect-admin-tag.json') },
      { name: 'protect-function', policy: load('infra/policies/scp-protect-function.json') }
    ]
  }
]
const boundary = [{ name: 'eks-admin-sync-boundary', policy: load('infra/policies/permission-boundary.json') }]

async function decide({ principal, action, resource, context = {}, withBoundary = false, resourcePolicy }) {
  const simulation = {
    request: {
      principal,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: { 'aws:PrincipalArn': principal, 'aws:PrincipalAccount': principal.split(':')[4] ?? ACCOUNT, ...context }
    },
    identityPolicies: principal.includes(':role/') || principal.includes(':user/') ? [adminAccess] : [],
    serviceControlPolicies: principal.includes(':role/') || principal.includes(':user/') ? scps : [],
    resourceControlPolicies: [],
    permissionBoundaryPolicies: withBoundary ? boundary : undefined,
    resourcePolicy
  }
  const r = await runSimulation(simulation, {})
  if (r.resultType === 'error') throw new Error(`${action} on ${resource}: ${JSON.stringify(r.errors)}`)
  return r.overallResult
}

// The attacks of issue 11, each as (what, request). Each runs as the account admin (the SCPs must stop it)
// and as a delegated admin with the boundary (the boundary must stop it too).
const tagKey = { 'aws:TagKeys': [TAG], [`aws:RequestTag/${TAG}`]: 'true' }
const tagged = { [`iam:ResourceTag/${TAG}`]: 'true' }
const attacks = [
  ['set the admin tag on a user', { action: 'iam:TagUser', resource: BOB, context: tagKey }],
  ['remove the admin tag from a user', { action: 'iam:UntagUser', resource: ALICE, context: { 'aws:TagKeys': [TAG] } }],
  ['create a user already tagged', { action: 'iam:CreateUser', resource: BOB, context: { ...tagKey, 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['tag a role (a future admin source)', { action: 'iam:TagRole', resource: `arn:aws:iam::${ACCOUNT}:role/x`, context: tagKey }],
  ['tag key in another case', { action: 'iam:TagUser', resource: BOB, context: { 'aws:TagKeys': ['EKS-Cluster-Admin'] } }],
  ['replace the boundary with a looser policy', { action: 'iam:PutUserPermissionsBoundary', resource: BOB, context: { 'iam:PermissionsBoundary': `arn:aws:iam::${ACCOUNT}:policy/Looser` } }],
  ['replace a role boundary with a looser policy', { action: 'iam:PutRolePermissionsBoundary', resource: `arn:aws:iam::${ACCOUNT}:role/x`, context: { 'iam:PermissionsBoundary': `arn:aws:iam::${ACCOUNT}:policy/Looser` } }],
  ['remove a user boundary', { action: 'iam:DeleteUserPermissionsBoundary', resource: BOB }],
  ['remove a role boundary', { action: 'iam:DeleteRolePermissionsBoundary', resource: `arn:aws:iam::${ACCOUNT}:role/x` }],
  ['edit the boundary (new version)', { action: 'iam:CreatePolicyVersion', resource: BOUNDARY_ARN }],
  ['edit the boundary (set default version)', { action: 'iam:SetDefaultPolicyVersion', resource: BOUNDARY_ARN }],
  ['create a user without the boundary', { action: 'iam:CreateUser', resource: `arn:aws:iam::${ACCOUNT}:user/mallory` }],
  ['create a role without the boundary', { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/mallory` }],
  ['access key for a tagged user', { action: 'iam:CreateAccessKey', resource: ALICE, context: tagged }],
  ['console password for a tagged user', { action: 'iam:CreateLoginProfile', resource: ALICE, context: tagged }],
  ['reset a tagged user\'s password', { action: 'iam:UpdateLoginProfile', resource: ALICE, context: tagged }],
  ['deactivate a tagged user\'s MFA', { action: 'iam:DeactivateMFADevice', resource: ALICE, context: tagged }],
  ['attach a policy to a tagged user', { action: 'iam:AttachUserPolicy', resource: ALICE, context: tagged }],
  ['inline policy on a tagged user', { action: 'iam:PutUserPolicy', resource: ALICE, context: tagged }],
  ['SSH key / signing certificate for a tagged user', { action: 'iam:UploadSSHPublicKey', resource: ALICE, context: tagged }],
  ['rename a tagged user away (rename swap)', { action: 'iam:UpdateUser', resource: ALICE, context: tagged }],
  ['delete a tagged user (then re-create the name)', { action: 'iam:DeleteUser', resource: ALICE, context: tagged }],
  ['take over a tagged role\'s trust', { action: 'iam:UpdateAssumeRolePolicy', resource: `arn:aws:iam::${ACCOUNT}:role/tagged`, context: tagged }],
  ['change the function\'s code', { action: 'lambda:UpdateFunctionCode', resource: FUNCTION }],
  ['change the function\'s configuration (ADMIN_TAG_KEY, DRY_RUN)', { action: 'lambda:UpdateFunctionConfiguration', resource: FUNCTION }],
  ['let someone else invoke the function', { action: 'lambda:AddPermission', resource: FUNCTION }],
  ['send the function a manual payload (force)', { action: 'lambda:InvokeFunction', resource: FUNCTION }],
  ['pass the function\'s role to another function', { action: 'iam:PassRole', resource: FUNCTION_ROLE }],
  ['widen the function\'s role', { action: 'iam:PutRolePolicy', resource: FUNCTION_ROLE }],
  ['rewrite the function\'s trust policy', { action: 'iam:UpdateAssumeRolePolicy', resource: FUNCTION_ROLE }],
  ['assume the function\'s role', { action: 'sts:AssumeRole', resource: FUNCTION_ROLE }],
  ['retarget the function\'s event rule', { action: 'events:PutTargets', resource: RULE }],
  ['disable the function\'s event rule', { action: 'events:DisableRule', resource: RULE }],
  ['read the dead letters', { action: 'sqs:ReceiveMessage', resource: QUEUE }],
  ['purge the dead letters', { action: 'sqs:PurgeQueue', resource: QUEUE }],
  // The function's ownership marks on access entries (issue 16): stripping one makes an entry unclear,
  // forging them makes someone's entry the function's to rewrite, and changing a marked entry is changing a grant.
  ['strip the function\'s mark tags from an access entry', { action: 'eks:UntagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync', 'eks-admin-sync-user-id'], ...MARKED } }],
  // Issue 23: each grant records its source in the tag eks-admin-sync-source, which the removal guard judges a
  // revocation by; rewriting it on a marked entry would make a typo's grants look like another source's.
  ['rewrite the source a marked entry records', { action: 'eks:TagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync-source'], 'aws:RequestTag/eks-admin-sync-source': 'iam-group:ops', ...MARKED } }],
  ['strip the source a marked entry records', { action: 'eks:UntagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync-source'], ...MARKED } }],
  ['set the function\'s mark on another entry', { action: 'eks:TagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync'], 'aws:RequestTag/eks-admin-sync': 'default' } }],
  ['create an access entry that carries the function\'s mark', { action: 'eks:CreateAccessEntry', resource: CLUSTER, context: { 'aws:TagKeys': ['eks-admin-sync'], 'aws:RequestTag/eks-admin-sync': 'default' } }],
  ['rewrite a marked entry (drop its group mark, change its username)', { action: 'eks:UpdateAccessEntry', resource: ENTRY, context: MARKED }],
  ['widen a marked entry\'s access policy', { action: 'eks:AssociateAccessPolicy', resource: ENTRY, context: { ...MARKED, 'eks:policyArn': 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy' } }],
  ['delete a marked entry', { action: 'eks:DeleteAccessEntry', resource: ENTRY, context: MARKED }],
  // Issue 17: roles and IAM groups as admin sources. A group's members are admins (ADMIN_IAM_GROUPS, here
  // eks-cluster-admins): joining it, removing someone (the guard would then see them leave), creating,
  // renaming (IAM authorizes UpdateGroup on the old and the new name, IAM API reference) or deleting it is a
  // grant or a revocation.
  ['tag a role under a path admin', { action: 'iam:TagRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: tagKey }],
  ['untag an admin role', { action: 'iam:UntagRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: { 'aws:TagKeys': [TAG] } }],
  ['create a role already tagged', { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/new`, context: { ...tagKey, 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['take over a tagged role under a path (trust policy)', { action: 'iam:UpdateAssumeRolePolicy', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: tagged }],
  ['delete a tagged role (then re-create the name)', { action: 'iam:DeleteRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: tagged }],
  ['join the admin group', { action: 'iam:AddUserToGroup', resource: ADMIN_GROUP }],
  ['remove a member from the admin group', { action: 'iam:RemoveUserFromGroup', resource: ADMIN_GROUP }],
  ['create the admin group (before the platform does)', { action: 'iam:CreateGroup', resource: ADMIN_GROUP }],
  ['rename a group to the admin name', { action: 'iam:UpdateGroup', resource: ADMIN_GROUP }],
  ['rename or delete the admin group', { action: 'iam:DeleteGroup', resource: ADMIN_GROUP }],
  ['the admin group under a path', { action: 'iam:AddUserToGroup', resource: `arn:aws:iam::${ACCOUNT}:group/teams/eks-cluster-admins` }],
  // Issue 18: the expiry tag. Extending it (or removing it: no expiry at all) is a grant.
  ['extend an admin\'s expiry', { action: 'iam:TagUser', resource: ALICE, context: { 'aws:TagKeys': [EXPIRY], [`aws:RequestTag/${EXPIRY}`]: '2099-01-01T00:00:00Z' } }],
  ['remove an admin\'s expiry', { action: 'iam:UntagUser', resource: ALICE, context: { 'aws:TagKeys': [EXPIRY] } }],
  ['extend a role\'s expiry', { action: 'iam:TagRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: { 'aws:TagKeys': [EXPIRY] } }],
  ['create a user with an expiry far away', { action: 'iam:CreateUser', resource: BOB, context: { 'aws:TagKeys': [TAG, EXPIRY], 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['expiry key in another case', { action: 'iam:TagUser', resource: ALICE, context: { 'aws:TagKeys': ['EKS-Cluster-Admin-Expires'] } }],
  // The expiry wake-up: a schedule in the function's group can invoke it with any payload, and the invoker
  // role can invoke it: neither may be made, changed or passed by anyone but the function and the deployer.
  ['create a schedule in the function\'s group (any payload)', { action: 'scheduler:CreateSchedule', resource: SCHEDULE_ARN }],
  ['move or delete the expiry wake-up', { action: 'scheduler:UpdateSchedule', resource: `arn:aws:scheduler:us-east-1:${ACCOUNT}:schedule/eks-admin-sync/eks-admin-sync-default-expiry` }],
  ['delete the schedule group', { action: 'scheduler:DeleteScheduleGroup', resource: `arn:aws:scheduler:us-east-1:${ACCOUNT}:schedule-group/eks-admin-sync` }],
  ['pass the invoker role to a schedule of one\'s own', { action: 'iam:PassRole', resource: INVOKER, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' } }],
  ['widen the invoker role', { action: 'iam:PutRolePolicy', resource: INVOKER }]
]

for (const [what, req] of attacks) {
  test(`denied to the account admin: ${what}`, async () => {
    assert.equal(await decide({ principal: ACCOUNT_ADMIN, ...req }), 'ExplicitlyDenied')
  })
  test(`denied to a delegated admin with the boundary: ${what}`, async () => {
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, ...req }), 'ExplicitlyDenied')
  })
}

test('a look-alike of a platform principal gets no exemption', async () => {
  for (const principal of LOOKALIKES) {
    assert.equal(await decide({ principal, action: 'iam:TagUser', resource: BOB, context: tagKey }), 'ExplicitlyDenied', principal)
    assert.equal(await decide({ principal, action: 'iam:CreateAccessKey', resource: ALICE, context: tagged }), 'ExplicitlyDenied', principal)
  }
})

// What the platform team and the deployer must still be able to do.
const allowed = [
  [PLATFORM, 'tag a user admin', { action: 'iam:TagUser', resource: BOB, context: tagKey }],
  [PLATFORM_SSO, 'untag a user', { action: 'iam:UntagUser', resource: ALICE, context: { 'aws:TagKeys': [TAG] } }],
  [PLATFORM, 'create a tagged user', { action: 'iam:CreateUser', resource: BOB, context: tagKey }],
  [PLATFORM, 'give a tagged user an access key', { action: 'iam:CreateAccessKey', resource: ALICE, context: tagged }],
  [PLATFORM_SSO, 'delete a tagged user', { action: 'iam:DeleteUser', resource: ALICE, context: tagged }],
  [PLATFORM, 'edit the boundary', { action: 'iam:CreatePolicyVersion', resource: BOUNDARY_ARN }],
  [PLATFORM, 'invoke the function with force', { action: 'lambda:InvokeFunction', resource: FUNCTION }],
  [PLATFORM, 'read the dead letters', { action: 'sqs:ReceiveMessage', resource: QUEUE }],
  [PLATFORM, 'add a member to the admin group', { action: 'iam:AddUserToGroup', resource: ADMIN_GROUP }],
  [PLATFORM_SSO, 'grant admin until tonight', { action: 'iam:TagUser', resource: BOB, context: { 'aws:TagKeys': [TAG, EXPIRY] } }],
  [PLATFORM_SSO, 'tag a role admin', { action: 'iam:TagRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/ops`, context: tagKey }],
  [ACCOUNT_ADMIN, 'manage groups that are not admin groups', { action: 'iam:AddUserToGroup', resource: `arn:aws:iam::${ACCOUNT}:group/readers` }],
  [DEPLOYER, 'deploy new function code', { action: 'lambda:UpdateFunctionCode', resource: FUNCTION }],
  [DEPLOYER, 'change the function configuration', { action: 'lambda:UpdateFunctionConfiguration', resource: FUNCTION }],
  [DEPLOYER, 'pass the function role to the function', { action: 'iam:PassRole', resource: FUNCTION_ROLE }],
  [DEPLOYER, 'create the function role without the boundary', { action: 'iam:CreateRole', resource: FUNCTION_ROLE }],
  [DEPLOYER, 'update the event rule', { action: 'events:PutTargets', resource: RULE }],
  [FUNCTION_ROLE, 'keep its expiry wake-up', { action: 'scheduler:UpdateSchedule', resource: `arn:aws:scheduler:us-east-1:${ACCOUNT}:schedule/eks-admin-sync/eks-admin-sync-default-expiry` }],
  [FUNCTION_ROLE, 'pass the invoker role to its schedule', { action: 'iam:PassRole', resource: INVOKER, context: { 'iam:PassedToService': 'scheduler.amazonaws.com' } }],
  [INVOKER, 'invoke the function at the expiry', { action: 'lambda:InvokeFunction', resource: FUNCTION }],
  [FUNCTION_ROLE, 'create its marked entries', { action: 'eks:CreateAccessEntry', resource: CLUSTER, context: { 'aws:TagKeys': ['eks-admin-sync'], 'aws:RequestTag/eks-admin-sync': 'default' } }],
  [FUNCTION_ROLE, 'restore its mark tags', { action: 'eks:TagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync'], 'aws:RequestTag/eks-admin-sync': 'default', ...MARKED } }],
  [FUNCTION_ROLE, 'update its entries', { action: 'eks:UpdateAccessEntry', resource: ENTRY, context: MARKED }],
  [FUNCTION_ROLE, 'delete its entries', { action: 'eks:DeleteAccessEntry', resource: ENTRY, context: MARKED }],
  [PLATFORM, 'take an entry over (remove the marks)', { action: 'eks:UntagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync'], ...MARKED } }],
  [PLATFORM_SSO, 'restore a stripped mark', { action: 'eks:TagResource', resource: ENTRY, context: { 'aws:TagKeys': ['eks-admin-sync'], 'aws:RequestTag/eks-admin-sync': 'default' } }],
  [ACCOUNT_ADMIN, 'tag an access entry with its own tags', { action: 'eks:TagResource', resource: ENTRY, context: { 'aws:TagKeys': ['team'], 'aws:RequestTag/team': 'data' } }],
  [ACCOUNT_ADMIN, 'manage entries that are not the function\'s', { action: 'eks:UpdateAccessEntry', resource: ENTRY }]
]
for (const [principal, what, req] of allowed) {
  test(`still allowed: ${principal.split('/').pop()} may ${what}`, async () => {
    assert.equal(await decide({ principal, ...req }), 'Allowed')
  })
}

test('the boundary still lets a delegated admin do ordinary IAM work', async () => {
  const ok = [
    { action: 'iam:CreateUser', resource: `arn:aws:iam::${ACCOUNT}:user/newhire`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } },
    { action: 'iam:CreateAccessKey', resource: BOB },
    { action: 'iam:TagUser', resource: BOB, context: { 'aws:TagKeys': ['team'], 'aws:RequestTag/team': 'data' } },
    { action: 'iam:AddUserToGroup', resource: `arn:aws:iam::${ACCOUNT}:group/readers` },
    { action: 's3:ListAllMyBuckets', resource: '*' }
  ]
  for (const req of ok) {
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, ...req }), 'Allowed', req.action)
  }
})

// The template's resource policies: the function role's trust policy and the dead-letter queue's policy.
const template = parseYaml(readFileSync(new URL('template.yaml', repo), 'utf8'))
const sub = (v) => JSON.parse(JSON.stringify(v, (k, x) => {
  if (x && typeof x === 'object' && !Array.isArray(x)) {
    if ('Fn::Sub' in x) return x['Fn::Sub'].replace('${AWS::Partition}', 'aws').replace('${AWS::Region}', 'us-east-1').replace('${AWS::AccountId}', ACCOUNT).replace('${AWS::StackName}', 'eks-admin-sync')
    if ('Ref' in x) return { 'AWS::AccountId': ACCOUNT, PlatformPrincipalArns: [PLATFORM], DeadLetterQueue: QUEUE }[x.Ref] ?? x
    if ('Fn::GetAtt' in x) return { 'FunctionRole.Arn': FUNCTION_ROLE, 'DeadLetterQueue.Arn': QUEUE }[x['Fn::GetAtt'].join('.')] ?? x
  }
  return x
}))

test('only Lambda, for this very function, may assume the function role', async () => {
  const trust = sub(template.Resources.FunctionRole.Properties.AssumeRolePolicyDocument)
  const assume = (sourceArn, account = ACCOUNT) => runSimulation({
    request: {
      principal: 'lambda.amazonaws.com',
      action: 'sts:AssumeRole',
      resource: { resource: FUNCTION_ROLE, accountId: ACCOUNT },
      contextVariables: sourceArn ? { 'aws:SourceAccount': account, 'aws:SourceArn': sourceArn } : { 'aws:SourceAccount': account }
    },
    identityPolicies: [],
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: trust
  }, {}).then((r) => r.overallResult)
  assert.equal(await assume(FUNCTION), 'Allowed')
  assert.equal(await assume(`arn:aws:lambda:us-east-1:${ACCOUNT}:function:someone-elses`), 'ImplicitlyDenied')
  assert.equal(await assume(FUNCTION, '444455556666'), 'ImplicitlyDenied', 'another account')
  // Without a source ARN in the request the account check still applies (IfExists: never locked out).
  assert.equal(await assume(undefined), 'Allowed')
  assert.equal(await assume(undefined, '444455556666'), 'ImplicitlyDenied')
})

test('the dead-letter queue: only the function sends, only the platform reads', async () => {
  const policy = sub(template.Resources.DeadLetterQueuePolicy.Properties.PolicyDocument)
  const ask = (principal, action) => decide({ principal, action, resource: QUEUE, resourcePolicy: policy, context: { 'aws:SecureTransport': 'true' } })
  assert.equal(await ask(FUNCTION_ROLE, 'sqs:SendMessage'), 'Allowed')
  assert.equal(await ask(PLATFORM, 'sqs:ReceiveMessage'), 'Allowed')
  for (const someone of [ACCOUNT_ADMIN, `arn:aws:iam::${ACCOUNT}:role/Developer`]) {
    assert.equal(await ask(someone, 'sqs:ReceiveMessage'), 'ExplicitlyDenied', someone)
    assert.equal(await ask(someone, 'sqs:SendMessage'), 'ExplicitlyDenied', someone)
  }
})

// The function role's own EKS permissions, resolved as CloudFormation would for ClusterNames=prod,staging.
const resolve = (v) => {
  if (Array.isArray(v)) return v.map(resolve)
  if (v && typeof v === 'object') {
    if ('Ref' in v) return { ClusterNames: ['prod', 'staging'], AccessPolicyNames: ['AmazonEKSClusterAdminPolicy'], 'AWS::Region': 'us-east-1', DeploymentId: 'default' }[v.Ref] ?? v
    if ('Fn::Sub' in v) return v['Fn::Sub'].replace('${AWS::Partition}', 'aws').replace('${AWS::AccountId}', ACCOUNT).replace('${DeploymentId}', 'default')
    if ('Fn::Join' in v) { const [d, parts] = v['Fn::Join']; return resolve(parts).flat().join(d) }
    if ('Fn::Split' in v) { const [d, s] = v['Fn::Split']; return resolve(s).split(d) }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]))
  }
  return v
}

test('the function may change only its own access entries, on exactly the managed clusters, with exactly the configured policies', async () => {
  const doc = resolve(template.Resources.FunctionRole.Properties.Policies.find((p) => p.PolicyName === 'manage-cluster-access').PolicyDocument)
  const ask = (action, resource, context = {}) => runSimulation({
    request: {
      principal: FUNCTION_ROLE,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: { 'aws:RequestedRegion': 'us-east-1', ...context }
    },
    identityPolicies: [{ name: 'manage-cluster-access', policy: doc }],
    serviceControlPolicies: [],
    resourceControlPolicies: []
  }, {}).then((r) => r.overallResult)
  const cluster = (c, region = 'us-east-1') => `arn:aws:eks:${region}:${ACCOUNT}:cluster/${c}`
  const entry = (c, region = 'us-east-1') => `arn:aws:eks:${region}:${ACCOUNT}:access-entry/${c}/user/${ACCOUNT}/alice/0123-abcd`
  const ADMIN = 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy'
  const ours = { 'aws:ResourceTag/eks-admin-sync': 'default' }
  const creating = { 'aws:RequestTag/eks-admin-sync': 'default', 'aws:TagKeys': ['eks-admin-sync'], 'eks:accessEntryType': 'STANDARD', 'eks:principalArn': ALICE, 'eks:kubernetesGroups': ['eks-admin-sync:default'] }
  for (const c of ['prod', 'staging']) {
    assert.equal(await ask('eks:DescribeCluster', cluster(c)), 'Allowed', c)
    assert.equal(await ask('eks:ListAccessEntries', cluster(c)), 'Allowed', c)
    assert.equal(await ask('eks:CreateAccessEntry', cluster(c), creating), 'Allowed', c)
    for (const a of ['eks:DescribeAccessEntry', 'eks:ListAssociatedAccessPolicies']) {
      assert.equal(await ask(a, entry(c)), 'Allowed', `${a} ${c}: anyone's entry may be read`)
    }
    for (const a of ['eks:UpdateAccessEntry', 'eks:DeleteAccessEntry', 'eks:DisassociateAccessPolicy']) {
      const context = a === 'eks:UpdateAccessEntry' ? { ...ours, 'eks:kubernetesGroups': ['eks-admin-sync:default'] } : ours
      assert.equal(await ask(a, entry(c), context), 'Allowed', `${a} ${c}`)
      // A node role's entry, a hand-made one, another deployment's: never changed.
      assert.equal(await ask(a, entry(c)), 'ImplicitlyDenied', `${a} ${c} unmarked`)
      assert.equal(await ask(a, entry(c), { 'aws:ResourceTag/eks-admin-sync': 'viewers' }), 'ImplicitlyDenied', `${a} ${c} other deployment`)
    }
    assert.equal(await ask('eks:AssociateAccessPolicy', entry(c), { 'eks:policyArn': ADMIN, ...ours }), 'Allowed', c)
    assert.equal(await ask('eks:AssociateAccessPolicy', entry(c), { 'eks:policyArn': ADMIN }), 'ImplicitlyDenied', `${c}: admin on someone else's entry`)
  }
  // Creating: only marked, only STANDARD, only for IAM users and roles of this account, never a
  // service-linked role.
  const { 'aws:RequestTag/eks-admin-sync': _mark, ...unmarked } = creating
  assert.equal(await ask('eks:CreateAccessEntry', cluster('prod'), unmarked), 'ImplicitlyDenied', 'unmarked')
  assert.equal(await ask('eks:CreateAccessEntry', cluster('prod'), { ...creating, 'eks:accessEntryType': 'EC2_LINUX' }), 'ImplicitlyDenied', 'node type')
  assert.equal(await ask('eks:CreateAccessEntry', cluster('prod'), { ...creating, 'eks:principalArn': `arn:aws:iam::${ACCOUNT}:role/team/PlatformTeamAdmin` }), 'Allowed', 'a role under a path')
  assert.equal(await ask('eks:CreateAccessEntry', cluster('prod'), { ...creating, 'eks:principalArn': `arn:aws:iam::${ACCOUNT}:role/aws-service-role/eks.amazonaws.com/AWSServiceRoleForAmazonEKS` }), 'ImplicitlyDenied', 'a service-linked role')
  assert.equal(await ask('eks:CreateAccessEntry', cluster('prod'), { ...creating, 'eks:principalArn': 'arn:aws:iam::444455556666:role/PlatformTeamAdmin' }), 'ImplicitlyDenied', "another account's role")
  // Another policy, another cluster, a cluster whose name only starts like a managed one, another region,
  // the clusters themselves.
  assert.equal(await ask('eks:AssociateAccessPolicy', entry('prod'), { 'eks:policyArn': 'arn:aws:eks::aws:cluster-access-policy/AmazonEKSAdminPolicy', ...ours }), 'ImplicitlyDenied')
  assert.equal(await ask('eks:AssociateAccessPolicy', entry('prod'), ours), 'ImplicitlyDenied', 'no policy named')
  for (const [a, r] of [['eks:DescribeCluster', cluster('dev')], ['eks:CreateAccessEntry', cluster('prod2')],
    ['eks:DeleteAccessEntry', entry('dev')], ['eks:DeleteAccessEntry', entry('prod-old')],
    ['eks:DescribeCluster', cluster('prod', 'eu-west-1')], ['eks:DeleteAccessEntry', entry('prod', 'eu-west-1')],
    ['eks:DeleteCluster', cluster('prod')], ['eks:UpdateClusterConfig', cluster('prod')]]) {
    const context = { ...(r.includes('eu-west-1') ? { 'aws:RequestedRegion': 'eu-west-1' } : {}), ...ours, ...creating }
    assert.equal(await ask(a, r, context), 'ImplicitlyDenied', `${a} ${r}`)
  }
})
