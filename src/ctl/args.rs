//! The command line of `strata ctl` (clap derive).

use std::path::PathBuf;

use clap::{Subcommand, ValueEnum};
use strata_proto::strata::v1 as pb;
use strata_tiering::service::DEFAULT_ENDPOINT;

#[derive(clap::Args, Debug)]
pub(crate) struct CtlArgs {
    /// The tiering API: unix://PATH (relative or absolute) or http://HOST:PORT.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "STRATA_ENDPOINT",
        default_value = DEFAULT_ENDPOINT
    )]
    pub(super) endpoint: String,
    /// Output format: human tables, or one JSON document for scripts.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub(super) output: Output,
    #[command(subcommand)]
    pub(super) command: CtlCommand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub(super) enum CtlCommand {
    /// One screen: catalog, lake, backlog, files by state, volumes, policies, last runs.
    Status,
    /// Tiering policies: apply, list, remove.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Volumes tiering serves: add, list, remove.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// The catalog's record of files moved or moving.
    #[command(subcommand)]
    Files(FilesCommand),
    /// Bring moved files back from the lake into their volume.
    Recall {
        /// The volume's id.
        volume: String,
        /// Paths relative to the volume root: `*` within a directory, `**` across.
        glob: String,
    },
    /// Run policies now.
    #[command(subcommand)]
    Run(RunCommand),
    /// The replicas of the catalog group (`strata catalog`): list, add, remove.
    Members(MembersArgs),
}

#[derive(clap::Args, Debug)]
pub(super) struct MembersArgs {
    /// Replicas of the catalog group to ask (host:port of their --listen or
    /// --advertise address; comma-separated or repeated). Any one that
    /// answers will do: it forwards changes to the leader.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        env = "STRATA_CATALOG",
        value_delimiter = ',',
        default_value = "127.0.0.1:7420"
    )]
    pub(super) catalog: Vec<String>,
    /// The group's name, checked by the replica (empty: not checked).
    #[arg(
        long,
        global = true,
        value_name = "NAME",
        env = "STRATA_CLUSTER",
        default_value = ""
    )]
    pub(super) cluster: String,
    /// How long to wait for an answer (adding a replica waits until it has
    /// caught up with the log).
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub(super) timeout: std::time::Duration,
    /// An admin's certificates (ca.crt, and tls.crt and tls.key of `strata
    /// certs issue --role admin`): the replicas answer only over mutual
    /// TLS, and change members only for an admin.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "STRATA_TLS_DIR",
        default_value = "/etc/strata/tls"
    )]
    pub(super) tls_dir: std::path::PathBuf,
    #[command(subcommand)]
    pub(super) command: MembersCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum MembersCommand {
    /// List the replicas, their role and how far each has replicated.
    #[command(alias = "list")]
    Ls {
        /// Answer from the replica asked, without confirming with the leader
        /// (works on a replica cut off from the majority).
        #[arg(long)]
        stale: bool,
    },
    /// Add a replica (started without --bootstrap): it is sent the log as a
    /// learner until it has caught up, then made a voter. The id of a member
    /// with a new address moves it there, and the leader sends it the log
    /// at the new address: a voter stays a voter; a learner stays one with
    /// --learner, and is made a voter without it, as an added replica is.
    Add {
        /// Its id (its `strata catalog --id`).
        id: u64,
        /// host:port where the other replicas reach it (its --advertise).
        address: String,
        /// Keep it a learner: it receives the log but does not vote.
        #[arg(long)]
        learner: bool,
    },
    /// Remove a replica from the group.
    #[command(alias = "remove")]
    Rm {
        /// Its id.
        id: u64,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum PolicyCommand {
    /// Validate a policy (YAML) and store it, replacing one of the same name.
    Apply {
        /// The policy file; `-` reads stdin.
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        direct: DirectCatalog,
    },
    /// List the stored policies.
    #[command(alias = "list")]
    Ls,
    /// Remove a policy.
    #[command(alias = "delete")]
    Rm {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        direct: DirectCatalog,
    },
}

/// Where a policy change goes when it does not go through a tiering agent:
/// straight to the replicated catalog, as an admin. A node agent may not
/// change policies in a catalog it shares with other nodes.
#[derive(clap::Args, Debug)]
pub(super) struct DirectCatalog {
    /// Send the change to these `strata catalog` replicas (host:port,
    /// comma-separated or repeated) with the admin certificate in --tls-dir,
    /// instead of to the tiering agent at --endpoint.
    #[arg(long, value_name = "HOST:PORT", value_delimiter = ',')]
    pub(super) catalog: Vec<String>,
    /// The group's name, checked by the replica (empty: not checked).
    #[arg(long, value_name = "NAME", env = "STRATA_CLUSTER", default_value = "")]
    pub(super) cluster: String,
    /// An admin's certificates (`strata certs issue --role admin`), for
    /// --catalog.
    #[arg(
        long,
        value_name = "DIR",
        env = "STRATA_TLS_DIR",
        default_value = "/etc/strata/tls"
    )]
    pub(super) tls_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub(super) enum VolumeCommand {
    /// Register a directory as a volume (or update its path and labels).
    Add {
        /// Letters, digits, '.', '_', '-', '/' (e.g. line-3/cam-1).
        id: String,
        /// The directory, on the server's machine: beneath one of its
        /// agent's volume roots (--volume-root) and clear of its catalog.
        path: PathBuf,
        /// A label for policy selectors; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List the volumes with their backlog.
    #[command(alias = "list")]
    Ls,
    /// Forget a volume (its file records stay).
    #[command(alias = "delete")]
    Rm {
        /// The volume's id.
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum FilesCommand {
    /// List files in (volume, path) order.
    #[command(alias = "list")]
    Ls {
        /// Only files in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// Only files on this volume.
        #[arg(long)]
        volume: Option<String>,
        /// Only paths starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// At most this many files; 0 for all.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Continue a listing where the last one stopped.
        #[arg(long)]
        page_token: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub(super) enum RunCommand {
    /// Run the policies now instead of waiting for their schedule.
    Now {
        /// Only this policy.
        #[arg(long)]
        policy: Option<String>,
        /// Only this volume.
        #[arg(long)]
        volume: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(super) enum StateArg {
    Intent,
    Uploaded,
    Archived,
    Released,
    Recalled,
    Abandoned,
}

impl From<StateArg> for pb::FileState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Intent => pb::FileState::Intent,
            StateArg::Uploaded => pb::FileState::Uploaded,
            StateArg::Archived => pb::FileState::Archived,
            StateArg::Released => pb::FileState::Released,
            StateArg::Recalled => pb::FileState::Recalled,
            StateArg::Abandoned => pb::FileState::Abandoned,
        }
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(Subcommand, Debug)]
    enum Top {
        Ctl(CtlArgs),
    }

    fn parse(args: &[&str]) -> CtlArgs {
        let Top::Ctl(a) = Cli::try_parse_from(["strata", "ctl"].iter().chain(args))
            .unwrap()
            .cmd;
        a
    }

    #[test]
    fn global_flags_go_anywhere() {
        let a = parse(&["files", "ls", "--state", "released", "-o", "json"]);
        assert_eq!(a.output, Output::Json);
        assert!(matches!(
            a.command,
            CtlCommand::Files(FilesCommand::Ls {
                state: Some(StateArg::Released),
                limit: 100,
                ..
            })
        ));
        let a = parse(&["--endpoint", "http://10.0.0.1:7070", "status"]);
        assert_eq!(a.endpoint, "http://10.0.0.1:7070");
    }

    #[test]
    fn labels_are_key_value() {
        let a = parse(&[
            "volume", "add", "line-3", "/srv/l3", "--label", "app=insp", "--label", "tier=",
        ]);
        let CtlCommand::Volume(VolumeCommand::Add { labels, .. }) = a.command else {
            panic!("{a:?}");
        };
        assert_eq!(
            labels,
            [
                ("app".to_owned(), "insp".to_owned()),
                ("tier".to_owned(), String::new())
            ]
        );
        assert_eq!(
            parse_label("novalue").unwrap_err(),
            "\"novalue\": expected KEY=VALUE"
        );
        assert!(parse_label("=x").is_err());
    }
}
