//! Where grants live, one module per store. Each implements [`crate::core::ports::Store`] and keeps its
//! own format and optimistic concurrency.

pub mod aws_auth;
