//! The EKS calls of the access-entries store, one function each, with what EKS's answers need: pages,
//! bounded retries where EKS is eventually consistent, and errors that name the cluster, call and principal.
//!
//! - 409 `ResourceInUseException` on create (someone made the entry since our read) → [`Stop::Race`]: the
//!   store reads again and re-plans.
//! - `InvalidParameterException` "The specified principalArn is invalid: invalid principal." right after
//!   `CreateUser`, and 404 on associate right after create → bounded retries, then a clear error.
//! - `ThrottlingException` → the SDK's own retries with backoff.
//! - `InvalidRequestException` (the cluster's mode does not allow access entries) →
//!   [`AccessEntriesError::WrongMode`], on which the caller describes the cluster afresh.

use super::AccessEntriesError;
use super::model::{Known, Marks, policy_of, scope_of};
use crate::core::grants::Grant;
use crate::core::plan::CurrentEntry;
use crate::core::settings::AccessPolicy;
use aws_sdk_eks::Client;
use aws_sdk_eks::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::collections::HashMap;
use std::time::Duration;

/// `ListAccessEntries` / `ListAssociatedAccessPolicies` page size (EKS's maximum).
pub const PAGE_SIZE: i32 = 100;
/// A stop for a paginator that never ends.
const MAX_PAGES: usize = 1000;
/// Tries of a call that EKS may refuse for a few seconds after IAM or EKS changed (eventual consistency),
/// with waits of 0.25, 0.5, 1, 2 … seconds between them.
pub const SETTLE_TRIES: u32 = 6;
const SETTLE_BASE: Duration = Duration::from_millis(250);

/// A step of a write that did not go through.
pub enum Stop {
    /// Someone created an entry since our read: read again and re-plan.
    Race,
    Fail(AccessEntriesError),
}

pub fn settle_wait(attempt: u32) -> Duration {
    SETTLE_BASE.saturating_mul(1u32 << attempt.min(8))
}

/// The token of the next page, if the answer says there is one.
fn next_page(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_string)
}

/// Every item of a paginated call: `page(token)` sends one request and answers its items and the next
/// token. Stops at [`MAX_PAGES`] rather than follow a paginator that never ends.
async fn all_pages<T, F, Fut>(
    cluster: &str,
    op: &'static str,
    principal: Option<&str>,
    mut page: F,
) -> Result<Vec<T>, AccessEntriesError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), AccessEntriesError>>,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let (items, next) = page(token.take()).await?;
        out.extend(items);
        token = next_page(next.as_deref());
        if token.is_none() {
            return Ok(out);
        }
    }
    Err(too_many_pages(cluster, op, principal))
}

/// A paginator that never ended: refused rather than followed forever.
fn too_many_pages(cluster: &str, op: &'static str, principal: Option<&str>) -> AccessEntriesError {
    AccessEntriesError::Api {
        cluster: cluster.into(),
        op,
        principal: principal.map(str::to_string),
        code: None,
        message: format!("more than {MAX_PAGES} pages; refusing to go on"),
    }
}

/// An SDK error as the store's: `InvalidRequestException` means the cluster's mode has no access entries.
pub fn error<E, R>(
    cluster: &str,
    op: &'static str,
    principal: Option<&str>,
    e: &SdkError<E, R>,
) -> AccessEntriesError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_string);
    if code.as_deref() == Some("InvalidRequestException") {
        return AccessEntriesError::WrongMode {
            cluster: cluster.into(),
            message: e
                .message()
                .map_or_else(|| DisplayErrorContext(e).to_string(), str::to_string),
        };
    }
    AccessEntriesError::Api {
        cluster: cluster.into(),
        op,
        principal: principal.map(str::to_string),
        code,
        message: DisplayErrorContext(e).to_string(),
    }
}

/// The EKS client of one cluster's store, with this deployment's marks.
pub struct Calls<'a> {
    pub client: &'a Client,
    pub marks: &'a Marks,
    pub cluster: &'a str,
}

impl Calls<'_> {
    /// Every principal with an entry on the cluster.
    pub async fn list(&self) -> Result<Vec<String>, AccessEntriesError> {
        let cluster = self.cluster;
        all_pages(cluster, "ListAccessEntries", None, |token| async move {
            let page = self
                .client
                .list_access_entries()
                .cluster_name(cluster)
                .max_results(PAGE_SIZE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| error(cluster, "ListAccessEntries", None, &e))?;
            Ok((page.access_entries().to_vec(), page.next_token))
        })
        .await
    }

    /// The ARN of every access policy EKS offers (`ListAccessPolicies`, all pages; the call is the
    /// account's, `cluster` only names the run that asked).
    pub async fn offered_policies(&self) -> Result<Vec<String>, AccessEntriesError> {
        let cluster = self.cluster;
        all_pages(cluster, "ListAccessPolicies", None, |token| async move {
            let page = self
                .client
                .list_access_policies()
                .max_results(PAGE_SIZE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| error(cluster, "ListAccessPolicies", None, &e))?;
            let arns = page
                .access_policies()
                .iter()
                .filter_map(|p| p.arn())
                .map(str::to_string)
                .collect();
            Ok((arns, page.next_token))
        })
        .await
    }

    /// One entry as (current entry for the planner, what the store keeps), or `None` when there is none.
    pub async fn describe(
        &self,
        principal: &str,
    ) -> Result<Option<(CurrentEntry, Known)>, AccessEntriesError> {
        let cluster = self.cluster;
        let out = match self
            .client
            .describe_access_entry()
            .cluster_name(cluster)
            .principal_arn(principal)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(error(cluster, "DescribeAccessEntry", Some(principal), &e)),
        };
        let Some(e) = out.access_entry() else {
            return Err(AccessEntriesError::Api {
                cluster: cluster.into(),
                op: "DescribeAccessEntry",
                principal: Some(principal.into()),
                code: None,
                message: "the response has no accessEntry".into(),
            });
        };
        Ok(Some(self.marks.entry(e, principal)))
    }

    /// The access policies associated with an entry (all pages), sorted.
    pub async fn policies(&self, principal: &str) -> Result<Vec<AccessPolicy>, AccessEntriesError> {
        let cluster = self.cluster;
        let op = "ListAssociatedAccessPolicies";
        let mut out = all_pages(cluster, op, Some(principal), |token| async move {
            let page = self
                .client
                .list_associated_access_policies()
                .cluster_name(cluster)
                .principal_arn(principal)
                .max_results(PAGE_SIZE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| error(cluster, op, Some(principal), &e))?;
            let policies = page
                .associated_access_policies()
                .iter()
                .filter_map(policy_of)
                .collect();
            Ok((policies, page.next_token))
        })
        .await?;
        out.sort();
        Ok(out)
    }

    /// Creates the entry of `g`, marked twice; retries while EKS does not know the principal yet.
    pub async fn create(&self, g: &Grant) -> Result<(), Stop> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .create_access_entry()
                .cluster_name(self.cluster)
                .principal_arn(&g.arn)
                .r#type("STANDARD")
                .username(&g.username)
                .set_kubernetes_groups(Some(self.marks.groups_for(g)))
                .set_tags(Some(self.marks.tags_for(g)))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("ResourceInUseException") => return Err(Stop::Race),
                Err(e) if is_invalid_principal(&e) => {
                    attempt += 1;
                    if attempt == SETTLE_TRIES {
                        return Err(Stop::Fail(AccessEntriesError::NotSettled {
                            cluster: self.cluster.into(),
                            principal: g.arn.clone(),
                            reason: format!(
                                "EKS still calls the principal invalid after {SETTLE_TRIES} tries (a user created \
                                 moments ago takes a few seconds to reach EKS); nothing was created, the next run \
                                 tries again"
                            ),
                        }));
                    }
                    tokio::time::sleep(settle_wait(attempt - 1)).await;
                }
                Err(e) => {
                    return Err(Stop::Fail(error(
                        self.cluster,
                        "CreateAccessEntry",
                        Some(&g.arn),
                        &e,
                    )));
                }
            }
        }
    }

    /// Associates every policy of `g` that `have` does not hold exactly (a 404 right after the entry was
    /// created is retried: EKS is eventually consistent).
    pub async fn associate_all(
        &self,
        g: &Grant,
        have: &[AccessPolicy],
    ) -> Result<(), AccessEntriesError> {
        for p in g.policies.iter().filter(|p| !have.contains(p)) {
            self.associate(g, p).await?;
        }
        Ok(())
    }

    /// Associates one policy (a 404 right after the entry was created is retried).
    pub async fn associate(&self, g: &Grant, p: &AccessPolicy) -> Result<(), AccessEntriesError> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .associate_access_policy()
                .cluster_name(self.cluster)
                .principal_arn(&g.arn)
                .policy_arn(&p.arn)
                .access_scope(scope_of(p))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    attempt += 1;
                    if attempt == SETTLE_TRIES {
                        return Err(AccessEntriesError::NotSettled {
                            cluster: self.cluster.into(),
                            principal: g.arn.clone(),
                            reason: format!(
                                "AssociateAccessPolicy {} still finds no entry after {SETTLE_TRIES} tries; the \
                                 next run tries again",
                                p.arn
                            ),
                        });
                    }
                    tokio::time::sleep(settle_wait(attempt - 1)).await;
                }
                Err(e) => {
                    return Err(error(
                        self.cluster,
                        "AssociateAccessPolicy",
                        Some(&g.arn),
                        &e,
                    ));
                }
            }
        }
    }

    /// Username and groups (every field we manage is sent: EKS resets what an update leaves out).
    pub async fn update(&self, to: &Grant) -> Result<(), AccessEntriesError> {
        self.client
            .update_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(&to.arn)
            .username(&to.username)
            .set_kubernetes_groups(Some(self.marks.groups_for(to)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error(self.cluster, "UpdateAccessEntry", Some(&to.arn), &e))
    }

    /// Restores the mark tags of an entry that carries both marks (all three are sent, so that IAM can
    /// require this deployment's mark on every tagging request).
    pub async fn tag(
        &self,
        known: &Known,
        to: &Grant,
        tags: HashMap<String, String>,
    ) -> Result<(), AccessEntriesError> {
        self.client
            .tag_resource()
            .resource_arn(&known.entry_arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| error(self.cluster, "TagResource", Some(&to.arn), &e))
    }

    /// Takes a policy off an entry; already gone is fine.
    pub async fn disassociate(
        &self,
        principal: &str,
        policy_arn: &str,
    ) -> Result<(), AccessEntriesError> {
        let sent = self
            .client
            .disassociate_access_policy()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .policy_arn(policy_arn)
            .send()
            .await;
        gone_is_fine(self.cluster, "DisassociateAccessPolicy", principal, sent).map(|_| ())
    }

    /// Deletes an entry; `Ok(false)` when it was already gone.
    pub async fn delete(&self, principal: &str) -> Result<bool, AccessEntriesError> {
        let sent = self
            .client
            .delete_access_entry()
            .cluster_name(self.cluster)
            .principal_arn(principal)
            .send()
            .await;
        gone_is_fine(self.cluster, "DeleteAccessEntry", principal, sent)
    }
}

/// `Ok(true)`: done; `Ok(false)`: EKS says the thing is already gone (404), which is what was wanted.
fn gone_is_fine<T, E, R>(
    cluster: &str,
    op: &'static str,
    principal: &str,
    sent: Result<T, SdkError<E, R>>,
) -> Result<bool, AccessEntriesError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match sent {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
        Err(e) => Err(error(cluster, op, Some(principal), &e)),
    }
}

/// EKS's answer while a principal made moments ago has not reached it: `InvalidParameterException` "The
/// specified principalArn is invalid: invalid principal." (as reported from real EKS).
fn is_invalid_principal<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.code() == Some("InvalidParameterException")
        && e.message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("invalid principal"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_waits_grow_and_stay_bounded() {
        let total: Duration = (0..SETTLE_TRIES - 1).map(settle_wait).sum();
        assert_eq!(settle_wait(0), Duration::from_millis(250));
        assert!(settle_wait(1) > settle_wait(0));
        assert!(total <= Duration::from_secs(8), "{total:?}");
    }

    /// Three pages become one list; an empty token ends it like none; a paginator that never ends is refused.
    #[tokio::test]
    async fn all_pages_follows_the_tokens_and_stops() {
        let pages = [
            (vec![1, 2], Some("a")),
            (vec![3], Some("b")),
            (vec![4], Some("")),
        ];
        let mut asked: Vec<Option<String>> = Vec::new();
        let mut n = 0;
        let got = all_pages("prod", "ListAccessEntries", None, |token| {
            asked.push(token);
            let (items, next) = pages[n].clone();
            n += 1;
            async move { Ok((items, next.map(str::to_string))) }
        })
        .await
        .unwrap();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(
            asked,
            vec![None, Some("a".to_string()), Some("b".to_string())]
        );
        let endless = all_pages("prod", "ListAccessPolicies", None, |_| async {
            Ok((vec![0u8], Some("again".to_string())))
        })
        .await
        .unwrap_err();
        assert!(
            endless.to_string().contains("ListAccessPolicies")
                && endless.to_string().contains("pages")
        );
    }
}
