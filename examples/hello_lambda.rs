//! The baseline for `make bench`'s init figure: a Lambda function built with the same runtime crate and
//! the same release profile as eks-admin-sync, doing nothing else (it answers every event with `{}`).

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<Value, lambda_runtime::Error>(serde_json::json!({}))
    }))
    .await
}
