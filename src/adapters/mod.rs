//! Thin adapters at the edge: AWS (IAM, the EKS cluster directory, the event bus, the expiry wake-up), the EKS token signer,
//! Kubernetes clients, and CLI rendering. Clients are built once in `main` and reused across warm invocations.

pub mod aws;
pub mod cli;
pub mod events;
pub mod kube;
pub mod token;
pub mod wakeup;
