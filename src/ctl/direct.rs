//! `strata ctl policy apply|rm --catalog`: a policy change sent straight to
//! the replicated catalog with an admin certificate (in a catalog shared by
//! many nodes, no node agent may change policies).

use std::path::Path;

use strata_tiering::catalog::{Applied, CatalogClient, Command, LogEntry, Timestamp};
use strata_tiering::raft::RemoteCatalog;

use super::args::DirectCatalog;
use super::{Failure, print};

fn client(direct: &DirectCatalog, context: &str) -> Result<RemoteCatalog, Failure> {
    let tls = strata_trust::SiteTls::load(&direct.tls_dir)
        .map_err(|e| Failure::new(context, format!("--tls-dir: {e}")))?;
    RemoteCatalog::new(
        &direct.catalog,
        &direct.cluster,
        std::time::Duration::from_secs(30),
        &tls,
    )
    .map_err(|e| Failure::new(context, e))
}

async fn propose(
    direct: &DirectCatalog,
    context: &str,
    command: Command,
) -> Result<Applied, Failure> {
    let entry = LogEntry {
        at: Timestamp::now(),
        command,
        by: None,
    };
    client(direct, context)?
        .propose(entry)
        .await
        .map_err(|e| Failure::new(context, e.to_string()))?
        .map_err(|r| Failure::new(context, r.to_string()))
}

fn report(name: &str, what: &str, applied: Applied, json: bool) {
    let changed = applied == Applied::Changed;
    if json {
        print(&format!(
            "{}\n",
            serde_json::json!({ "name": name, "changed": changed })
        ));
    } else if changed {
        print(&format!("policy {name} {what} in the catalog group\n"));
    } else {
        print(&format!("policy {name} unchanged\n"));
    }
}

/// Checks the policy here (every error, each with its path), then stores it.
pub(super) async fn apply_policy(
    file: &Path,
    direct: &DirectCatalog,
    json: bool,
) -> Result<(), Failure> {
    let context = format!("policy apply {}", file.display());
    let yaml = super::read_policy_file(file).map_err(|e| Failure::new(&context, e))?;
    let policy = strata_tiering::policy::parse_policy(&yaml)
        .map_err(|e| Failure::new(&context, e.to_string()))?;
    let name = policy.name().to_owned();
    let command = Command::PutPolicy {
        name: name.clone(),
        spec: yaml,
    };
    let applied = propose(direct, &context, command).await?;
    report(&name, "stored", applied, json);
    Ok(())
}

/// Removes the policy `name`.
pub(super) async fn remove_policy(
    name: &str,
    direct: &DirectCatalog,
    json: bool,
) -> Result<(), Failure> {
    let context = format!("policy rm {name}");
    let command = Command::DeletePolicy {
        name: name.to_owned(),
    };
    let applied = propose(direct, &context, command).await?;
    report(name, "removed", applied, json);
    Ok(())
}
