//! eks-admin-sync: keeps EKS cluster-admin access in sync with tagged IAM users.
//!
//! Arrows point down only: the binary (`main.rs`) → [`adapters`] and [`store`] → [`core`].
//! - [`core`]: pure; settings, events, grants, plans, the guard, audit records, the reconcile and its ports.
//! - [`store`]: one module per place grants live (today [`store::aws_auth`]); each implements
//!   [`core::ports::Store`].
//! - [`adapters`]: IAM, EKS (the cluster directory), the token signer, Kubernetes clients, CLI rendering.

pub mod adapters;
pub mod core;
pub mod store;
