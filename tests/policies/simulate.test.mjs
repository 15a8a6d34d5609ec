// Every attack on the grant path from issue 11, evaluated offline against the shipped policies with an IAM
// policy evaluator (@cloud-copilot/iam-simulate: identity policies, SCPs, permissions boundaries, resource
// and trust policies, all condition operators). Each attack must be denied; the platform principals and the
// deployer must still be able to do their jobs. Run: `npm ci && node --test` here (make test does).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { runSimulation } from '@cloud-copilot/iam-simulate'
import { parse as parseYaml } from './cfn-yaml.mjs'

const repo = new URL('../../', import.meta.url)
const load = (p) => JSON.parse(readFileSync(new URL(p, repo), 'utf8'))
// POLICIES_DIR runs the same cases against other policy files (say, an earlier version's, to show which
// attacks they allowed); a file missing there is simply not attached.
const POLICIES = process.env.POLICIES_DIR ? `file://${process.env.POLICIES_DIR.replace(/\/?$/, '/')}` : new URL('infra/policies/', repo)
const policy = (name) => existsSync(new URL(name, POLICIES)) ? [{ name, policy: JSON.parse(readFileSync(new URL(name, POLICIES), 'utf8')) }] : []

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
// Issue 24: an admin group's member lives under the path the policies protect (ADMIN_GROUP_MEMBER_PATH).
const MEMBER = `arn:aws:iam::${ACCOUNT}:user/eks-admins/dave`
const TAGGED_ROLE = `arn:aws:iam::${ACCOUNT}:role/team/ops` // carries the tag
const SAML = `arn:aws:iam::${ACCOUNT}:saml-provider/AWSSSO_0123456789abcdef_DO_NOT_DELETE`
const STACK = `arn:aws:cloudformation:us-east-1:${ACCOUNT}:stack/eks-admin-sync/0aa1b2c3-d4e5-f6a7-b8c9-d0e1f2a3b4c5`
const OTHER_STACK = `arn:aws:cloudformation:us-east-1:${ACCOUNT}:stack/anything/0aa1b2c3-d4e5-f6a7-b8c9-d0e1f2a3b4c5`
const CSC = `arn:aws:lambda:us-east-1:${ACCOUNT}:code-signing-config:csc-0123456789abcdef0`
const SCHEDULE_ARN = `arn:aws:scheduler:us-east-1:${ACCOUNT}:schedule/eks-admin-sync/mine`

const adminAccess = { name: 'AdministratorAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }
const fullAccessScp = { name: 'FullAWSAccess', policy: { Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] } }
const scps = [
  { orgIdentifier: 'r-root', policies: [fullAccessScp] },
  {
    orgIdentifier: ACCOUNT,
    policies: [
      fullAccessScp,
      ...policy('scp-protect-admin-tag.json'),
      ...policy('scp-protect-function.json'),
      ...policy('scp-protect-trusted-principals.json')
    ]
  }
]
const boundary = policy('permission-boundary.json')

async function decide({ principal, action, resource, context = {}, withBoundary = false, noScps = false, resourcePolicy }) {
  const simulation = {
    request: {
      principal,
      action,
      resource: { resource, accountId: ACCOUNT },
      contextVariables: { 'aws:PrincipalArn': principal, 'aws:PrincipalAccount': principal.split(':')[4] ?? ACCOUNT, ...context }
    },
    identityPolicies: principal.includes(':role/') || principal.includes(':user/') ? [adminAccess] : [],
    serviceControlPolicies: !noScps && (principal.includes(':role/') || principal.includes(':user/')) ? scps : [],
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
  ['widen the invoker role', { action: 'iam:PutRolePolicy', resource: INVOKER }],
  // Issue 24, 1: a member of an admin group carries no tag; IAM has no condition on group membership, so
  // members live under the admin path (the function grants no member elsewhere), which is what is protected.
  ['access key for an admin group\'s member', { action: 'iam:CreateAccessKey', resource: MEMBER }],
  ['console password for an admin group\'s member', { action: 'iam:CreateLoginProfile', resource: MEMBER }],
  ['policy on an admin group\'s member', { action: 'iam:AttachUserPolicy', resource: MEMBER }],
  ['rename an admin group\'s member away (rename swap)', { action: 'iam:UpdateUser', resource: MEMBER }],
  ['delete an admin group\'s member (then re-create the name)', { action: 'iam:DeleteUser', resource: MEMBER }],
  ['create a user on the admin path', { action: 'iam:CreateUser', resource: `arn:aws:iam::${ACCOUNT}:user/eks-admins/mallory`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  // 2: Identity Center's roles and its SAML provider.
  ['create a role named like an Identity Center role', { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/AWSReservedSSO_Admin_0123456789abcdef`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['create such a role under another path', { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/team/AWSReservedSSO_Admin_0123456789abcdef`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['replace the IdP metadata of Identity Center\'s SAML provider', { action: 'iam:UpdateSAMLProvider', resource: SAML }],
  ['delete Identity Center\'s SAML provider (and re-create it)', { action: 'iam:DeleteSAMLProvider', resource: SAML }],
  ['create a SAML provider under Identity Center\'s name', { action: 'iam:CreateSAMLProvider', resource: SAML }],
  // 3: a tagged role's credentials through a service: passing it (AddRoleToInstanceProfile needs iam:PassRole
  // on the role too: IAM API reference, AddRoleToInstanceProfile).
  ['pass a tagged role to an instance or task', { action: 'iam:PassRole', resource: TAGGED_ROLE, context: { ...tagged, 'iam:PassedToService': 'ec2.amazonaws.com' } }],
  ['add a tagged role to an instance profile (its PassRole)', { action: 'iam:PassRole', resource: TAGGED_ROLE, context: tagged }],
  // 4: the exempt principals themselves.
  ['rewrite the platform role\'s trust policy', { action: 'iam:UpdateAssumeRolePolicy', resource: PLATFORM }],
  ['attach a policy to the platform role', { action: 'iam:AttachRolePolicy', resource: PLATFORM }],
  ['delete the platform role (then re-create it)', { action: 'iam:DeleteRole', resource: PLATFORM }],
  ['rewrite the deployer\'s trust policy', { action: 'iam:UpdateAssumeRolePolicy', resource: DEPLOYER }],
  ['widen the deployer', { action: 'iam:PutRolePolicy', resource: DEPLOYER }],
  ['loosen the deployer\'s boundary', { action: 'iam:PutRolePermissionsBoundary', resource: DEPLOYER, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }],
  ['pass the deployer to CloudFormation', { action: 'iam:PassRole', resource: DEPLOYER, context: { 'iam:PassedToService': 'cloudformation.amazonaws.com' } }],
  ['update the stack (other parameters or code)', { action: 'cloudformation:UpdateStack', resource: STACK }],
  ['update any stack as the deployer', { action: 'cloudformation:UpdateStack', resource: OTHER_STACK, context: { 'cloudformation:RoleArn': DEPLOYER } }],
  ['a change set as the deployer', { action: 'cloudformation:CreateChangeSet', resource: OTHER_STACK, context: { 'cloudformation:RoleArn': DEPLOYER } }],
  ['delete the stack', { action: 'cloudformation:DeleteStack', resource: STACK }],
  // 6: the function's code-signing settings, protected like its code.
  ['detach the function\'s code-signing configuration', { action: 'lambda:DeleteFunctionCodeSigningConfig', resource: FUNCTION }],
  ['let other publishers sign (update the configuration)', { action: 'lambda:UpdateCodeSigningConfig', resource: CSC, context: { 'aws:ResourceTag/eks-admin-sync': 'code-signing' } }]
]

// Issue 24, 5: the boundary binds whoever carries it. What it denies on principals that do NOT carry it (the
// delegated-administrator pattern): changes of their policies, through iam:PermissionsBoundary, which IAM puts
// in the request of exactly these actions (Service Authorization Reference for IAM: Attach/Detach/Put/Delete
// User/RolePolicy take it; UpdateAssumeRolePolicy and DeleteRole do not, see below).
const UNBOUNDED_USER = `arn:aws:iam::${ACCOUNT}:user/ci`
const UNBOUNDED_ROLE = `arn:aws:iam::${ACCOUNT}:role/Deploy`
const throughUnbounded = [
  ['attach a policy to a user without the boundary', { action: 'iam:AttachUserPolicy', resource: UNBOUNDED_USER }],
  ['inline policy on a user without the boundary', { action: 'iam:PutUserPolicy', resource: UNBOUNDED_USER }],
  ['attach a policy to a role without the boundary', { action: 'iam:AttachRolePolicy', resource: UNBOUNDED_ROLE }],
  ['inline policy on a role without the boundary', { action: 'iam:PutRolePolicy', resource: UNBOUNDED_ROLE }]
]
// A trust policy rewritten (then the role assumed, outside the boundary) or a role deleted and its name made
// again (a row of someone else's naming it then lets the maker in): IAM gives neither request an
// iam:PermissionsBoundary key (Service Authorization Reference for IAM), so the boundary cannot tell a role
// that carries it from one that does not, and denies both on every role. The requests below carry no such key.
const trustOrExistence = [
  ['rewrite the trust of a role (and assume it)', { action: 'iam:UpdateAssumeRolePolicy', resource: UNBOUNDED_ROLE }],
  ['delete a role (then make its name again)', { action: 'iam:DeleteRole', resource: UNBOUNDED_ROLE }]
]

for (const [what, req] of attacks) {
  test(`denied to the account admin: ${what}`, async () => {
    assert.equal(await decide({ principal: ACCOUNT_ADMIN, ...req }), 'ExplicitlyDenied')
  })
  test(`denied to a delegated admin with the boundary: ${what}`, async () => {
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, ...req }), 'ExplicitlyDenied')
  })
}

test('nobody creates a role under Identity Center\'s path (IAM reserves /aws-reserved/ for AWS, and the policies deny it too)', async () => {
  const req = { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/aws-reserved/sso.amazonaws.com/Admin`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }
  for (const [principal, withBoundary] of [[ACCOUNT_ADMIN, false], [DELEGATED, true], [PLATFORM, false]]) {
    assert.notEqual(await decide({ principal, withBoundary, ...req }), 'Allowed', principal)
  }
})

for (const [what, req] of throughUnbounded) {
  test(`denied to a delegated admin by the boundary alone: ${what}`, async () => {
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, noScps: true, ...req }), 'ExplicitlyDenied')
  })
}

test('the same changes on principals that carry the boundary stay the delegated admin\'s work', async () => {
  for (const [, req] of throughUnbounded) {
    const context = { ...(req.context || {}), 'iam:PermissionsBoundary': BOUNDARY_ARN }
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, ...req, context }), 'Allowed', req.action)
  }
})

for (const [what, req] of trustOrExistence) {
  test(`denied to a delegated admin by the boundary alone, whatever the role carries: ${what}`, async () => {
    assert.equal(await decide({ principal: DELEGATED, withBoundary: true, noScps: true, ...req }), 'ExplicitlyDenied')
  })
}

// What the boundary cannot do alone: no IAM condition key tells whether the target of CreateAccessKey,
// CreateLoginProfile or PassRole carries a boundary (Service Authorization Reference for IAM: these actions
// take none), so a delegated admin can take over an existing principal without it. The boundary alone allows
// that (asserted here, as the truth); the SCPs then bind whatever that principal does, since they bind every
// principal of the account: the stolen identity cannot set the admin tag, join an admin group, or change the
// function either.
test('the boundary alone cannot keep a delegated admin out of a principal without it; the SCPs bind that principal', async () => {
  assert.equal(await decide({ principal: DELEGATED, withBoundary: true, noScps: true, action: 'iam:CreateAccessKey', resource: UNBOUNDED_USER }), 'Allowed')
  assert.equal(await decide({ principal: DELEGATED, withBoundary: true, noScps: true, action: 'iam:PassRole', resource: UNBOUNDED_ROLE }), 'Allowed')
  for (const [, req] of attacks.filter(([w]) => /admin tag|admin group|function\'s code|tagged user/.test(w))) {
    assert.equal(await decide({ principal: UNBOUNDED_USER, ...req }), 'ExplicitlyDenied', req.action)
  }
})

// IAM Identity Center makes its roles and keeps its SAML provider in a member account through its
// service-linked role AWSServiceRoleForSSO (IAM Identity Center User Guide, "Using service-linked roles"), and
// service control policies do not affect service-linked roles (AWS Organizations User Guide, "Service control
// policies": tasks and entities not restricted by SCPs). So the SCPs deny these requests to every other
// principal, the platform included, and Identity Center still does them. Both halves asserted: the same request
// as an ordinary principal is denied by the SCPs; the service-linked role, evaluated as AWS evaluates it (no SCP;
// it carries no boundary), is allowed. The permission-set roles it makes under /aws-reserved/ are not a case
// here: this evaluator refuses every change under that path whoever asks (it models IAM's reservation, not the
// service-linked role), so that half rests on the same documentation; our statements name no exemption a
// service-linked role would need.
const SSO_SERVICE = `arn:aws:iam::${ACCOUNT}:role/aws-service-role/sso.amazonaws.com/AWSServiceRoleForSSO`
const identityCenterWork = [
  ['renew its SAML provider\'s metadata', { action: 'iam:UpdateSAMLProvider', resource: SAML }],
  ['delete its SAML provider', { action: 'iam:DeleteSAMLProvider', resource: SAML }]
]
for (const [what, req] of identityCenterWork) {
  test(`Identity Center alone may ${what}`, async () => {
    assert.equal(await decide({ principal: PLATFORM, ...req }), 'ExplicitlyDenied', 'the platform, bound by the SCPs')
    assert.equal(await decide({ principal: SSO_SERVICE, noScps: true, ...req }), 'Allowed', 'the service-linked role')
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
  [ACCOUNT_ADMIN, 'manage entries that are not the function\'s', { action: 'eks:UpdateAccessEntry', resource: ENTRY }],
  // Issue 24: the platform places and keeps admin-group members, passes the deployer, runs the stack.
  [PLATFORM, 'create a member on the admin path', { action: 'iam:CreateUser', resource: MEMBER }],
  [PLATFORM_SSO, 'give a member an access key', { action: 'iam:CreateAccessKey', resource: MEMBER }],
  [PLATFORM, 'pass the deployer to CloudFormation', { action: 'iam:PassRole', resource: DEPLOYER, context: { 'iam:PassedToService': 'cloudformation.amazonaws.com' } }],
  [PLATFORM, 'deploy the stack with the deployer', { action: 'cloudformation:UpdateStack', resource: STACK, context: { 'cloudformation:RoleArn': DEPLOYER } }],
  [PLATFORM, 'maintain the deployer', { action: 'iam:PutRolePolicy', resource: DEPLOYER }],
  [PLATFORM, 'pass a tagged role (a CI role the platform made admin)', { action: 'iam:PassRole', resource: TAGGED_ROLE, context: tagged }],
  [DEPLOYER, 'attach the code-signing configuration (CloudFormation as the deployer)', { action: 'lambda:PutFunctionCodeSigningConfig', resource: FUNCTION }],
  [ACCOUNT_ADMIN, 'pass an ordinary role', { action: 'iam:PassRole', resource: `arn:aws:iam::${ACCOUNT}:role/app`, context: { 'iam:PassedToService': 'ec2.amazonaws.com' } }],
  [ACCOUNT_ADMIN, 'run another stack', { action: 'cloudformation:UpdateStack', resource: OTHER_STACK }],
  [ACCOUNT_ADMIN, 'give an ordinary user an access key', { action: 'iam:CreateAccessKey', resource: `arn:aws:iam::${ACCOUNT}:user/newhire` }],
  [ACCOUNT_ADMIN, 'create an ordinary role', { action: 'iam:CreateRole', resource: `arn:aws:iam::${ACCOUNT}:role/app`, context: { 'iam:PermissionsBoundary': BOUNDARY_ARN } }]
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
