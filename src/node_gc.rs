//! `strata node gc`: list this node's orphans and, only with `--apply`,
//! remove them. The rules are strata_csi::orphans'; this is the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use comfy_table::presets::NOTHING;
use strata_csi::orphans::{self, Orphan, Outcome, Scanner};
use strata_csi::owners::{FileOwners, KubeOwners, NoOwners, VolumeOwners};
use strata_csi::{Driver, NodeConfig, server};

/// Where orphans are looked for and who owns volumes (`strata node`,
/// `strata node gc`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct OrphanArgs {
    /// The kubelet's root directory: staging and publish directories of
    /// driver strata.io are looked for under it, and the node calls' staging,
    /// target and volume paths must lie beneath it (resolved once at start;
    /// no symlink beneath it is followed).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/kubelet")]
    pub(crate) kubelet_dir: PathBuf,
    /// Time between the two looks of an orphan survey: only what both find
    /// counts (a volume whose PersistentVolume is being created is not an orphan).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(crate) orphan_settle: Duration,
    /// How long ago LVM must have made an LV that a CreateVolume marks as its
    /// own while it works (strata.io/filling: a restore or clone being
    /// copied; strata.io/temporary: the snapshot a clone copies from) before
    /// it counts as abandoned, when no PersistentVolume names it, its device
    /// is closed and no request of this node holds it: then it is listed as
    /// removable and `gc --apply` removes it.
    #[arg(
        long,
        value_name = "DURATION",
        default_value_t = strata_csi::orphans::in_flight::DEFAULT_GRACE.into(),
        value_parser = parse_grace
    )]
    pub(crate) filling_grace: humantime::Duration,
    /// For tests only, a stand-in for the Kubernetes API server: a file
    /// listing the volume handles of the PersistentVolumes that exist, one a
    /// line (a missing file reads as an unreachable API server). Unset: the
    /// in-cluster API (or KUBECONFIG).
    #[arg(long, value_name = "FILE")]
    pub(crate) persistent_volumes_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct GcArgs {
    /// Node configuration file (the same as `strata node`'s).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Only list the orphans (the default).
    #[arg(long, conflicts_with = "apply")]
    dry_run: bool,
    /// Remove them: lvremove orphan volumes that are neither open nor
    /// mounted (and, for a restore or clone that never finished, no longer
    /// any request's: see --filling-grace), unmount mounts of volumes that
    /// are gone, remove empty leftover kubelet directories.
    #[arg(long)]
    apply: bool,
    #[command(flatten)]
    orphans: OrphanArgs,
}

fn parse_grace(text: &str) -> Result<humantime::Duration, String> {
    text.trim()
        .parse()
        .map_err(|e| format!("expected a duration like 15m or 1h ({e})"))
}

/// Who owns volumes: the stand-in file when given, else the Kubernetes API
/// when one is configured, else nobody knows.
pub(crate) async fn volume_owners(args: &OrphanArgs) -> Arc<dyn VolumeOwners> {
    if let Some(file) = &args.persistent_volumes_file {
        return Arc::new(FileOwners::new(file));
    }
    match KubeOwners::try_default().await {
        Some(k) => Arc::new(k),
        None => Arc::new(NoOwners),
    }
}

/// The orphans as a table.
fn render(orphans: &[Orphan]) -> String {
    let mut table = Table::new();
    table
        .load_style(NOTHING)
        .set_header(vec!["KIND", "NAME", "WHERE", "WHY"]);
    for o in orphans {
        let mut why = o.reason.clone();
        if let Some(u) = &o.in_use {
            why.push_str(&format!(" ({u}: kept)"));
        }
        table.add_row(vec![
            o.kind.as_str().to_owned(),
            o.name(),
            o.path
                .as_deref()
                .map_or("-".to_owned(), |p| p.display().to_string()),
            why,
        ]);
    }
    let n = table.column_count();
    for (i, col) in table.column_iter_mut().enumerate() {
        col.set_padding((0, if i + 1 == n { 0 } else { 3 }));
    }
    let mut out = table.trim_fmt();
    out.push('\n');
    out
}

pub(crate) async fn run(args: GcArgs) -> anyhow::Result<()> {
    let config = NodeConfig::load(&args.config)
        .with_context(|| format!("--config {}", args.config.display()))?;
    let lvm = server::open_lvm(&config)?;
    let driver = Arc::new(Driver::new(config, "gc".to_owned(), lvm));
    let owners = volume_owners(&args.orphans).await;
    let scanner = Scanner {
        driver: driver.clone(),
        owners: owners.clone(),
        kubelet_dir: args.orphans.kubelet_dir.clone(),
        settle: args.orphans.orphan_settle,
        filling_grace: *args.orphans.filling_grace,
    };
    let survey = scanner.survey().await?;
    if let Some(p) = &survey.owners_problem {
        println!("PersistentVolumes unknown ({p}): no volume is judged an orphan");
    } else {
        println!("PersistentVolumes from {}", owners.describe());
    }
    if survey.orphans.is_empty() {
        println!("no orphans");
        return Ok(());
    }
    print!("{}", render(&survey.orphans));
    if !args.apply {
        // --apply checks each again with the same rules: what is kept here
        // is kept there.
        let kept = survey.orphans.iter().filter(|o| o.in_use.is_some()).count();
        println!(
            "dry run: nothing removed; `strata node gc --apply` would remove {} of these and keep {kept} (WHY says why)",
            survey.orphans.len() - kept
        );
        return Ok(());
    }
    let mounts = strata_csi::mount::mounts().unwrap_or_default();
    let mut failed = 0;
    for o in orphans::removal_order(&survey.orphans, &mounts) {
        let d = driver.clone();
        let one = o.clone();
        let grace = *args.orphans.filling_grace;
        let outcome = tokio::task::spawn_blocking(move || orphans::remove(&d, &one, grace)).await?;
        let what = format!("{} {}", o.kind.as_str(), o.name());
        // A volume's path is where it is mounted: the reason it is kept says so.
        let at = o
            .path
            .as_deref()
            .filter(|_| o.kind != orphans::OrphanKind::Volume)
            .map(|p| format!(" at {}", p.display()))
            .unwrap_or_default();
        match outcome {
            Outcome::Removed => println!("removed {what}{at}"),
            Outcome::Kept(why) => println!("kept {what}{at}: {why}"),
            Outcome::Failed(why) => {
                failed += 1;
                println!("FAILED {what}{at}: {why}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} orphans could not be removed",
            survey.orphans.len()
        );
    }
    Ok(())
}
