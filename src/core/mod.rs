//! The pure core: no I/O, no AWS or Kubernetes types. It defines the ports ([`ports`]) that adapters and
//! stores implement; nothing in here imports a store.
//!
//! The phases of an invocation, each in its module: [`event`] (event → intent with provenance),
//! [`grants`] (IAM facts → grants), [`plan`] (a cluster's state × grants → plan), [`guard`] (refuses what an
//! unattended run must not do), [`audit`] (records and metrics), [`reconcile`] (runs the phases).

pub mod audit;
pub mod event;
pub mod grants;
pub mod guard;
pub mod levels;
pub mod plan;
pub mod ports;
pub mod reconcile;
pub mod settings;
