//! `strata certs`: the site CA and the role certificates every part of a
//! site presents to the catalog (see README, "Security model").

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use strata_trust::{Identity, IssueRequest, Role, SiteTls};

#[derive(clap::Args, Debug)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum CertsCommand {
    /// Make the site CA: ca.crt and ca.key (0600) in --dir. Keep ca.key
    /// off the nodes: it issues every certificate the catalog trusts.
    Init {
        /// Where to write ca.crt and ca.key (never over existing files).
        #[arg(long, value_name = "DIR", default_value = "./strata-ca")]
        dir: PathBuf,
        /// The site's name, in the CA's subject.
        #[arg(long, env = "STRATA_SITE", default_value = "")]
        site: String,
        /// How long the CA is valid.
        #[arg(long, value_name = "DURATION", default_value = "10years", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Issue a certificate for one part of the site: tls.crt, tls.key
    /// (0600) and a copy of ca.crt in --out, the directory that `strata
    /// catalog --tls-dir`, `strata node --catalog-tls-dir` and `strata ctl
    /// --tls-dir` read (a Kubernetes TLS Secret has the same three keys).
    Issue {
        /// The CA's directory (ca.crt, ca.key).
        #[arg(long, value_name = "DIR", default_value = "./strata-ca")]
        ca_dir: PathBuf,
        /// replica (a `strata catalog` replica), node (a node agent: give
        /// --name its node name) or admin (an operator's `strata ctl`).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The node's name for a node certificate (as --node-id); for the
        /// others a name for the logs.
        #[arg(long, default_value = "")]
        name: String,
        /// Where to write the files (never over existing ones).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// DNS names to add (strata checks roles, not names; other tools
        /// may want them). Comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        dns: Vec<String>,
        /// IP addresses to add, likewise.
        #[arg(long, value_delimiter = ',')]
        ip: Vec<IpAddr>,
        /// How long the certificate is valid.
        #[arg(long, value_name = "DURATION", default_value = "365days", value_parser = humantime::parse_duration)]
        valid_for: Duration,
    },
    /// Show who a TLS directory's certificate names, and check it against
    /// its CA (the check every peer makes).
    Show {
        /// The directory (ca.crt, tls.crt, tls.key).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

pub(crate) fn run(args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Init {
            dir,
            site,
            valid_for,
        } => {
            strata_trust::init_ca(&dir, &site, valid_for).context("strata certs init")?;
            println!(
                "site CA in {}: {} (give it to every part) and {} (keep it safe, off the nodes)",
                dir.display(),
                strata_trust::CA_CERT,
                strata_trust::CA_KEY
            );
        }
        CertsCommand::Issue {
            ca_dir,
            role,
            name,
            out,
            dns,
            ip,
            valid_for,
        } => {
            let identity = Identity::new(role, name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let mut request = IssueRequest::new(identity.clone(), valid_for);
            request.dns_names = dns;
            request.ips = ip;
            strata_trust::issue(&ca_dir, &request, &out).context("strata certs issue")?;
            println!(
                "{identity} certificate in {} ({}, {}, {}), valid for {}",
                out.display(),
                strata_trust::TLS_CERT,
                strata_trust::TLS_KEY,
                strata_trust::CA_CERT,
                humantime::format_duration(valid_for)
            );
        }
        CertsCommand::Show { dir } => {
            let tls = SiteTls::load(&dir).context("strata certs show")?;
            println!(
                "{}: {} (issued by its ca.crt, valid now)",
                dir.display(),
                tls.identity()
            );
        }
    }
    Ok(())
}

/// Loads the TLS directory a flag names, with the flag in the error.
pub(crate) fn load_tls(dir: &std::path::Path, flag: &str) -> anyhow::Result<SiteTls> {
    SiteTls::load(dir).with_context(|| {
        format!(
            "{flag} {}: the site's certificates (ca.crt, tls.crt, tls.key; `strata certs issue` \
             makes them)",
            dir.display()
        )
    })
}
