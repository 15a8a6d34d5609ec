//! eks-admin-sync: keeps EKS cluster-admin mappings in `kube-system/aws-auth` in sync with tagged IAM users.
//!
//! Pure core (no I/O): [`config`], [`event`], [`desired`], [`plan`], [`awsauth`], [`yaml`], [`token`]
//! (signing only). Adapters at the edge: [`aws`] (IAM, EKS), [`cluster`] (Kubernetes API),
//! [`handler`] (one invocation, shared by the Lambda runtime and the CLI).

pub mod aws;
pub mod awsauth;
pub mod cluster;
pub mod config;
pub mod desired;
pub mod event;
pub mod fastyaml;
pub mod handler;
pub mod plan;
pub mod token;
pub mod yaml;
