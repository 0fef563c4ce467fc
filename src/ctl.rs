//! `strata ctl`: the operator's view of tiering over the `strata.v1.Tiering`
//! API: status, policies, volumes, files, runs and recalls; and of the
//! catalog group's members over `strata.v1.Catalog` (`members`). Human tables by
//! default; `-o json` prints one stable document per command (see
//! [`json`]). Errors go to stderr as `strata ctl: <command>: <reason>`, one
//! line per reason, and the exit status is 1.

mod args;
mod direct;
mod format;
mod json;
mod members;
mod progress;
mod render;
mod settling;

use std::time::{Duration, SystemTime};

pub(crate) use args::CtlArgs;
use args::{CtlCommand, FilesCommand, Output, PolicyCommand, RunCommand, VolumeCommand};
use strata_proto::strata::v1 as pb;
use strata_proto::strata::v1::tiering_client::TieringClient;
use tonic::transport::{Channel, Endpoint};

/// Files asked of the server at once (its maximum page).
const PAGE: u32 = 1000;

/// Why a command failed: what was being done, and the reasons.
#[derive(Debug)]
struct Failure {
    context: String,
    message: String,
}

impl Failure {
    fn new(context: &str, message: impl Into<String>) -> Self {
        Self {
            context: context.to_owned(),
            message: message.into(),
        }
    }

    fn status(context: &str, s: &tonic::Status) -> Self {
        let message = if s.message().is_empty() {
            s.code().description().to_owned()
        } else {
            s.message().to_owned()
        };
        Self::new(context, message)
    }

    /// One line per reason (a policy's errors come one a line).
    fn render(&self) -> String {
        self.message
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| format!("strata ctl: {}: {l}\n", self.context))
            .collect()
    }
}

/// The error and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Runs `strata ctl`; answers the process's exit status.
pub(crate) async fn run(args: CtlArgs) -> i32 {
    match execute(args).await {
        Ok(()) => 0,
        Err(f) => {
            eprint!("{}", f.render());
            1
        }
    }
}

async fn connect(endpoint: &str) -> Result<TieringClient<Channel>, Failure> {
    let context = format!("cannot reach {endpoint}");
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| Failure::new(&context, chain(&e)))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| {
            let reason = chain(&e);
            let reason = reason.strip_prefix("transport error: ").unwrap_or(&reason);
            Failure::new(
                &context,
                format!(
                    "{reason}; is strata running there? (choose with --endpoint or STRATA_ENDPOINT)"
                ),
            )
        })?;
    Ok(TieringClient::new(channel))
}

fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn execute(args: CtlArgs) -> Result<(), Failure> {
    let json = args.output == Output::Json;
    let command = match args.command {
        // The catalog group's own API, not the tiering endpoint.
        CtlCommand::Members(m) => return members::run(m, json).await,
        CtlCommand::Policy(PolicyCommand::Apply { file, direct }) if !direct.catalog.is_empty() => {
            return direct::apply_policy(&file, &direct, json).await;
        }
        CtlCommand::Policy(PolicyCommand::Rm { name, direct }) if !direct.catalog.is_empty() => {
            return direct::remove_policy(&name, &direct, json).await;
        }
        other => other,
    };
    let mut client = connect(&args.endpoint).await?;
    let now = SystemTime::now();
    match command {
        CtlCommand::Status => {
            let s = client
                .status(pb::StatusRequest {})
                .await
                .map_err(|e| Failure::status("status", &e))?
                .into_inner();
            print(&if json {
                json::to_string(&json::Status::from(&s))
            } else {
                render::status(&s, now)
            });
        }
        CtlCommand::Policy(cmd) => policy(&mut client, cmd, json, now).await?,
        CtlCommand::Volume(cmd) => volume(&mut client, cmd, json).await?,
        CtlCommand::Files(FilesCommand::Ls {
            state,
            volume,
            prefix,
            limit,
            page_token,
        }) => {
            let req = pb::ListFilesRequest {
                state: state.map(pb::FileState::from).unwrap_or_default().into(),
                volume: volume.unwrap_or_default(),
                path_prefix: prefix.unwrap_or_default(),
                limit: 0,
                page_token: page_token.unwrap_or_default(),
            };
            let (files, next) = list_files(&mut client, req, limit).await?;
            if json {
                #[derive(serde::Serialize)]
                struct Doc {
                    files: Vec<json::File>,
                    next_page_token: Option<String>,
                }
                print(&json::to_string(&Doc {
                    files: files.iter().map(json::File::from).collect(),
                    next_page_token: next,
                }));
            } else {
                print(&render::files(&files, now));
                if let Some(token) = next {
                    eprintln!(
                        "more files: continue with --page-token {token} (or --limit 0 for all)"
                    );
                }
            }
        }
        CtlCommand::Recall { volume, glob } => recall(&mut client, volume, glob, json).await?,
        CtlCommand::Run(RunCommand::Now { policy, volume }) => {
            let req = pb::RunNowRequest {
                policy: policy.unwrap_or_default(),
                volume: volume.unwrap_or_default(),
            };
            let runs = client
                .run_now(req)
                .await
                .map_err(|e| Failure::status("run now", &e))?
                .into_inner()
                .runs;
            if json {
                print(&json::to_string(&json::RunNow::from(runs.as_slice())));
            } else {
                print(&render::run_now(&runs, now));
            }
        }
        CtlCommand::Members(_) => unreachable!("answered above"),
    }
    Ok(())
}

async fn policy(
    client: &mut TieringClient<Channel>,
    cmd: PolicyCommand,
    json: bool,
    now: SystemTime,
) -> Result<(), Failure> {
    match cmd {
        PolicyCommand::Apply { file, .. } => {
            let context = format!("policy apply {}", file.display());
            let yaml = read_policy_file(&file).map_err(|e| Failure::new(&context, e))?;
            let r = client
                .apply_policy(pb::ApplyPolicyRequest { yaml })
                .await
                .map_err(|e| Failure::status(&context, &e))?
                .into_inner();
            if json {
                print(&json::to_string(&serde_json::json!({
                    "name": r.name,
                    "change": json::change_name(r.change()),
                })));
            } else {
                print(&render::change("policy", &r.name, r.change()));
            }
        }
        PolicyCommand::Ls => {
            let ps = client
                .list_policies(pb::ListPoliciesRequest {})
                .await
                .map_err(|e| Failure::status("policy ls", &e))?
                .into_inner()
                .policies;
            if json {
                let policies: Vec<json::Policy> = ps.iter().map(json::Policy::from).collect();
                print(&json::to_string(
                    &serde_json::json!({ "policies": policies }),
                ));
            } else {
                print(&render::policies(&ps, now));
            }
        }
        PolicyCommand::Rm { name, .. } => {
            client
                .delete_policy(pb::DeletePolicyRequest { name: name.clone() })
                .await
                .map_err(|e| Failure::status(&format!("policy rm {name}"), &e))?;
            if json {
                print(&json::to_string(
                    &serde_json::json!({ "name": name, "deleted": true }),
                ));
            } else {
                print(&format!("policy {name} deleted\n"));
            }
        }
    }
    Ok(())
}

/// A policy file's text; `-` is stdin.
fn read_policy_file(file: &std::path::Path) -> Result<String, String> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| e.to_string())
}

async fn volume(
    client: &mut TieringClient<Channel>,
    cmd: VolumeCommand,
    json: bool,
) -> Result<(), Failure> {
    match cmd {
        VolumeCommand::Add { id, path, labels } => {
            let context = format!("volume add {id}");
            // The server wants an absolute path; a relative one means here.
            let path = std::path::absolute(&path)
                .map_err(|e| Failure::new(&context, format!("{}: {e}", path.display())))?;
            let path = path
                .to_str()
                .ok_or_else(|| Failure::new(&context, format!("{}: not UTF-8", path.display())))?
                .to_owned();
            let r = client
                .add_volume(pb::AddVolumeRequest {
                    id: id.clone(),
                    path,
                    labels: labels.into_iter().collect(),
                })
                .await
                .map_err(|e| Failure::status(&context, &e))?
                .into_inner();
            if json {
                print(&json::to_string(&serde_json::json!({
                    "id": id,
                    "change": json::change_name(r.change()),
                })));
            } else {
                print(&render::change("volume", &id, r.change()));
            }
        }
        VolumeCommand::Ls => {
            let vs = client
                .list_volumes(pb::ListVolumesRequest {})
                .await
                .map_err(|e| Failure::status("volume ls", &e))?
                .into_inner()
                .volumes;
            if json {
                let volumes: Vec<json::Volume> = vs.iter().map(json::Volume::from).collect();
                print(&json::to_string(&serde_json::json!({ "volumes": volumes })));
            } else {
                print(&render::volumes(&vs));
            }
        }
        VolumeCommand::Rm { id } => {
            client
                .remove_volume(pb::RemoveVolumeRequest { id: id.clone() })
                .await
                .map_err(|e| Failure::status(&format!("volume rm {id}"), &e))?;
            if json {
                print(&json::to_string(
                    &serde_json::json!({ "id": id, "removed": true }),
                ));
            } else {
                print(&format!("volume {id} removed\n"));
            }
        }
    }
    Ok(())
}

/// Up to `limit` files (all for 0) from `req`'s page on, and the token to
/// continue with when more remain.
async fn list_files(
    client: &mut TieringClient<Channel>,
    mut req: pb::ListFilesRequest,
    limit: u64,
) -> Result<(Vec<pb::File>, Option<String>), Failure> {
    let mut files = Vec::new();
    loop {
        let remaining = if limit == 0 {
            u64::from(PAGE)
        } else {
            limit - files.len() as u64
        };
        req.limit = remaining.min(u64::from(PAGE)) as u32;
        let page = client
            .list_files(req.clone())
            .await
            .map_err(|e| Failure::status("files ls", &e))?
            .into_inner();
        files.extend(page.files);
        if page.next_page_token.is_empty() {
            return Ok((files, None));
        }
        if limit != 0 && files.len() as u64 >= limit {
            return Ok((files, Some(page.next_page_token)));
        }
        req.page_token = page.next_page_token;
    }
}

async fn recall(
    client: &mut TieringClient<Channel>,
    volume: String,
    glob: String,
    json: bool,
) -> Result<(), Failure> {
    let context = format!("recall {volume} {glob}");
    let mut stream = client
        .recall(pb::RecallRequest {
            volume: volume.clone(),
            glob: glob.clone(),
        })
        .await
        .map_err(|e| Failure::status(&context, &e))?
        .into_inner();
    let mut bar = progress::Progress::new();
    let mut result = None;
    let end = loop {
        match stream.message().await {
            Ok(Some(pb::RecallEvent {
                event: Some(pb::recall_event::Event::Progress(p)),
            })) => bar.update(&p),
            Ok(Some(pb::RecallEvent {
                event: Some(pb::recall_event::Event::Result(r)),
            })) => result = Some(r),
            Ok(Some(pb::RecallEvent { event: None })) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(Failure::status(&context, &e)),
        }
    };
    bar.finish();
    end?;
    let r = result
        .ok_or_else(|| Failure::new(&context, "the server ended the recall without a result"))?;
    if json {
        let failures: Vec<_> = r
            .failures
            .iter()
            .map(|f| serde_json::json!({ "path": f.path, "error": f.error }))
            .collect();
        print(&json::to_string(&serde_json::json!({
            "volume": volume,
            "glob": glob,
            "matched": r.matched,
            "files": r.files,
            "bytes": r.bytes,
            "already_local": r.already_local,
            "conflicts": r.conflicts,
            "failed": r.failed,
            "failures": failures,
        })));
    } else {
        print(&render::recall_result(&volume, &glob, &r));
    }
    let failed = r.failed.max(r.failures.len() as u64);
    if failed > 0 {
        return Err(Failure::new(
            &context,
            format!("{failed} of the files could not be recalled"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_on_every_line() {
        let s = tonic::Status::invalid_argument(
            "rules[0].modifiedBefore: expected a duration like 7d\nlake.url: not a URL",
        );
        assert_eq!(
            Failure::status("policy apply cold.yaml", &s).render(),
            "strata ctl: policy apply cold.yaml: rules[0].modifiedBefore: expected a duration like 7d\n\
             strata ctl: policy apply cold.yaml: lake.url: not a URL\n"
        );
        let empty = tonic::Status::new(tonic::Code::Unavailable, "");
        assert_eq!(
            Failure::status("status", &empty).render(),
            "strata ctl: status: The service is currently unavailable\n"
        );
    }

    #[test]
    fn json_documents_are_stable() {
        let f = pb::File {
            volume: "v".into(),
            path: "a.jpg".into(),
            state: pb::FileState::Archived.into(),
            size: 5,
            sha256: "ab".repeat(32),
            lake_key: "v/a.jpg".into(),
            policy: "p".into(),
            rule: "r".into(),
            move_id: 9,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            intent_at: Some(prost_types::Timestamp {
                seconds: 1_767_323_045,
                nanos: 0,
            }),
            recalled_at: None,
            updated_at: None,
            mtime: None,
            owner: Some(pb::Ownership {
                uid: 1000,
                gid: 50,
                mode: 0o2640,
            }),
            lake: Some("s3://lake/site-a".into()),
            verified_at: Some(prost_types::Timestamp {
                seconds: 1_767_323_046,
                nanos: 0,
            }),
        };
        let doc: serde_json::Value =
            serde_json::from_str(&json::to_string(&json::File::from(&f))).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "volume": "v", "path": "a.jpg", "state": "archived", "size": 5,
                "sha256": "ab".repeat(32), "lake_key": "v/a.jpg", "policy": "p", "rule": "r",
                "move_id": 9, "attempts": 0, "last_error": null, "next_attempt_at": null,
                "intent_at": "2026-01-02T03:04:05.000Z", "recalled_at": null,
                "updated_at": null, "mtime": null,
                "owner": {"uid": 1000, "gid": 50, "mode": "2640"},
                "lake": "s3://lake/site-a", "verified_at": "2026-01-02T03:04:06.000Z"
            })
        );
        let s = pb::StatusResponse {
            lake: pb::LakeReachability::Up.into(),
            counts: vec![pb::StateCount {
                state: pb::FileState::Released.into(),
                files: 2,
                bytes: 9,
            }],
            ..Default::default()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&json::to_string(&json::Status::from(&s))).unwrap();
        assert_eq!(doc["lake"], "up");
        assert_eq!(
            doc["files_by_state"]["released"],
            serde_json::json!({"files": 2, "bytes": 9})
        );
        assert_eq!(
            doc["files_by_state"]["intent"],
            serde_json::json!({"files": 0, "bytes": 0})
        );
        assert_eq!(
            doc["backlog"],
            serde_json::json!({"files": 0, "bytes": 0, "oldest_age_seconds": null})
        );
        assert_eq!(
            doc["catalog"],
            serde_json::json!({"role": null, "term": null, "leader": null, "applied_index": null})
        );
        assert_eq!(doc["site_timezone"], serde_json::Value::Null);
        let s = pb::StatusResponse {
            site_timezone: Some(pb::SiteTimeZone {
                name: "America/Chicago".into(),
                source: "/etc/localtime".into(),
            }),
            ..Default::default()
        };
        let doc: serde_json::Value =
            serde_json::from_str(&json::to_string(&json::Status::from(&s))).unwrap();
        assert_eq!(
            doc["site_timezone"],
            serde_json::json!({"name": "America/Chicago", "source": "/etc/localtime"})
        );
        assert_eq!(doc["volumes"], serde_json::json!([]));
    }
}
