//! `strata up`: one command brings up the node plugin on a loop-backed volume
//! group under its data directory; a CSI client can create a volume at once,
//! and a second start reuses the same file and volume group.

mod common;
#[path = "../tiering/tests/common/moto.rs"]
mod moto;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use strata_proto::csi::v1 as csi;

struct Up {
    child: std::process::Child,
}

/// Removes the test's VG and detaches its loop device, even when an assertion failed.
struct Cleanup {
    vg: String,
    pv: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("lvm")
            .args([
                "vgremove",
                "-ff",
                "-y",
                "--config",
                "global{activation=0}",
                &self.vg,
            ])
            .output();
        if let Ok(out) = Command::new("losetup")
            .args(["-j", self.pv.to_str().unwrap(), "-O", "NAME", "-n"])
            .output()
        {
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("losetup").args(["-d", l.trim()]).output();
            }
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(data: &std::path::Path, vg: &str) -> (Up, std::path::PathBuf) {
    // A killed predecessor leaves its socket file behind: wait for a new one.
    let _ = std::fs::remove_file(data.join("csi.sock"));
    let child = Command::new(strata_bin())
        .args(["up", "--size-gib", "1", "--volume-group", vg, "--data-dir"])
        .arg(data)
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Up { child };
    let socket = data.join("csi.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "strata up never served its socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (up, socket)
}

#[tokio::test]
async fn up_serves_csi_on_a_loop_backed_volume_group() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("upvg");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let (up, socket) = start(data.path(), &vg).await;
    let ch = connect(&socket).await;
    let mut ident = csi::identity_client::IdentityClient::new(ch.clone());
    assert_eq!(
        ident
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );
    let mut ctrl = csi::controller_client::ControllerClient::new(ch);
    let v = ctrl
        .create_volume(create_req("pvc-up-1", 40 * MIB, mount_cap("")))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(v.capacity_bytes, 40 * MIB);
    drop(up);

    // Second start: same file, same VG, the volume is still there.
    let (up, socket) = start(data.path(), &vg).await;
    let mut ctrl = csi::controller_client::ControllerClient::new(connect(&socket).await);
    let listed = ctrl
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = listed
        .entries
        .iter()
        .map(|e| e.volume.as_ref().unwrap().volume_id.clone())
        .collect();
    drop(up);

    let pv = data.path().join("lvm/pv.img");
    let loops = sh("losetup", &["-j", pv.to_str().unwrap(), "-O", "NAME", "-n"]);
    // The Cleanup guard removes the VG and detaches the loop device.
    assert_eq!(ids, vec!["pvc-up-1".to_string()]);
    assert_eq!(
        loops.lines().count(),
        1,
        "a restart must reuse the loop device: {loops}"
    );
}

/// The catalog's record of `path` in the demo volume.
fn record(data: &std::path::Path, path: &str) -> serde_json::Value {
    files(data)
        .into_iter()
        .find(|r| r["path"] == path)
        .unwrap_or_else(|| panic!("no record of {path}"))
}

async fn start_tiering(data: &std::path::Path, vg: &str) -> Up {
    start_tiering_with(data, vg, &[], &[]).await
}

/// `strata up` for tiering tests, with extra arguments and environment.
/// Files are judged at once (`--settle 0s`) unless `extra` sets `--settle`.
async fn start_tiering_with(
    data: &std::path::Path,
    vg: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Up {
    let _ = std::fs::remove_file(data.join("strata.sock"));
    let settle: &[&str] = if extra.contains(&"--settle") {
        &[]
    } else {
        &["--settle", "0s"]
    };
    let child = Command::new(strata_bin())
        .args(["up", "--size-gib", "1", "--volume-group", vg, "--data-dir"])
        .arg(data)
        .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--tick", "1h"])
        .args(settle)
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Up { child };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ctl(data, &["status"]).is_err() {
        assert!(
            Instant::now() < deadline,
            "strata up never served its tiering API"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up
}

/// The whole tiering loop through the two user-facing commands: the demo
/// volume's cold file goes to the lake (verified, removed locally), the hot
/// one stays, a bad policy is refused with its path, recall brings the file
/// back byte for byte with its mtime, and after a kill -9 and a restart the
/// catalog still knows all of it.
#[tokio::test]
async fn up_moves_cold_files_recalls_them_and_keeps_its_catalog() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("uptier");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let up = start_tiering(data.path(), &vg).await;
    let demo = data.path().join("volumes/demo");
    // The demo volume comes with sample files old enough for its policy.
    let samples: Vec<String> = (1..=5).map(|n| format!("sample-{n}.txt")).collect();
    for s in &samples {
        let age = std::fs::metadata(demo.join(s))
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap();
        assert!(age > Duration::from_secs(86_400), "{s} is {age:?} old");
    }
    let cold: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(demo.join("cold.bin"), &cold).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            demo.join("cold.bin"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
    }
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(demo.join("cold.bin"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    std::fs::write(demo.join("hot.txt"), b"still in use").unwrap();

    let runs = ctl(data.path(), &["run", "now"]).unwrap();
    assert!(runs.to_string().contains("demo"), "{runs}");
    let all = files(data.path());
    let mut moved: Vec<&str> = all.iter().map(|r| r["path"].as_str().unwrap()).collect();
    moved.sort_unstable();
    let mut cold_ones: Vec<&str> = samples.iter().map(String::as_str).collect();
    cold_ones.insert(0, "cold.bin");
    assert_eq!(moved, cold_ones, "only the cold files move: {all:?}");
    assert!(all.iter().all(|r| r["state"] == "released"), "{all:?}");
    let f = [record(data.path(), "cold.bin")];
    assert_eq!(f[0]["sha256"], sha256_hex(&cold));
    // What a recall will restore: the owner and mode the file had.
    assert_eq!(f[0]["owner"]["mode"], "0640", "{}", f[0]);
    // hot.txt was written by this process, as cold.bin was.
    let uid = u64::from(std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(demo.join("hot.txt")).unwrap(),
    ));
    assert_eq!(f[0]["owner"]["uid"], uid, "{}", f[0]);
    assert!(
        !demo.join("cold.bin").exists(),
        "released means removed locally"
    );
    assert_eq!(
        std::fs::read(demo.join("hot.txt")).unwrap(),
        b"still in use"
    );
    let key = f[0]["lake_key"].as_str().unwrap();
    let object = std::fs::read(data.path().join("lake").join(key)).unwrap();
    assert_eq!(
        sha256_hex(&object),
        sha256_hex(&cold),
        "the lake holds the same bytes"
    );

    let bad = data.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nselector: {volumes: [\"*\"]}\nlake: {url: \"file:///tmp/x\"}\n\
         rules:\n  - name: r\n    modifiedBefore: soon\n    action: move\n",
    )
    .unwrap();
    let e = ctl(
        data.path(),
        &["policy", "apply", "-f", bad.to_str().unwrap()],
    )
    .unwrap_err();
    assert!(e.contains("rules[0].modifiedBefore"), "{e}");
    let policies = ctl(data.path(), &["policy", "ls"]).unwrap().to_string();
    assert!(
        !policies.contains("\"bad\""),
        "a refused policy is not stored: {policies}"
    );

    ctl(data.path(), &["recall", "demo", "*.bin"]).unwrap();
    assert_eq!(std::fs::read(demo.join("cold.bin")).unwrap(), cold);
    let mtime = std::fs::metadata(demo.join("cold.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, old, "recall restores the recorded mtime");
    assert_eq!(record(data.path(), "cold.bin")["state"], "recalled");
    drop(up); // SIGKILL

    let up = start_tiering(data.path(), &vg).await;
    let f = files(data.path());
    assert_eq!(f.len(), 6, "{f:?}");
    assert_eq!(record(data.path(), "cold.bin")["state"], "recalled");
    let runs = ctl(data.path(), &["run", "now"]).unwrap();
    assert!(runs.to_string().contains("demo"), "{runs}");
    assert_eq!(
        record(data.path(), "cold.bin")["state"],
        "recalled",
        "a recalled file is not moved again until it is cold again"
    );
    assert!(demo.join("cold.bin").exists());
    drop(up);
}

/// A new user's first `run now`: the demo volume's sample files were
/// back-dated at the first start, so their ctime is new and a settle window
/// of an hour holds all five back. Nothing moves, and `run now` says how many
/// files (and bytes) wait, and why, in both its human and JSON answers.
#[tokio::test]
async fn up_run_now_says_what_the_settle_window_held_back() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("upsettle");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let up = start_tiering_with(data.path(), &vg, &["--settle", "1h"], &[]).await;
    let demo = data.path().join("volumes/demo");
    let sample_bytes: u64 = (1..=5)
        .map(|n| {
            std::fs::metadata(demo.join(format!("sample-{n}.txt")))
                .unwrap()
                .len()
        })
        .sum();

    let answer = ctl(data.path(), &["run", "now"]).unwrap();
    let runs = answer["runs"].as_array().unwrap();
    let run = runs
        .iter()
        .find(|r| r["volume"] == "demo")
        .unwrap_or_else(|| panic!("no run of demo: {answer}"));
    assert_eq!(run["files"], 0, "{answer}");
    assert_eq!(run["settling_files"], 5, "{answer}");
    assert_eq!(run["settling_bytes"], sample_bytes, "{answer}");
    assert_eq!(run["settle_seconds"], 3600, "{answer}");
    assert_eq!(
        answer["settling"],
        serde_json::json!({"files": 5, "bytes": sample_bytes, "settle_seconds": 3600}),
        "{answer}"
    );
    assert!(files(data.path()).is_empty(), "nothing moved");
    for n in 1..=5 {
        assert!(demo.join(format!("sample-{n}.txt")).exists());
    }

    let endpoint = format!("unix://{}", data.path().join("strata.sock").display());
    let out = Command::new(strata_bin())
        .args(["ctl", "--endpoint", &endpoint, "run", "now"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("5 files (")
            && l.ends_with(
                ") were changed less than 1h ago (the settle window, --settle) \
                 and wait for a later run"
            )),
        "{text}"
    );
    drop(up);
}

/// The agent works only beneath its volume roots (`<data-dir>/volumes`
/// and `--volume-root`) and never on the catalog's own data: `volume add`
/// refuses anything else with the path and the roots named; a volume
/// registered while its root was configured, and left outside the roots by
/// a restart without it, is neither scanned nor released, and `status`
/// says why.
#[tokio::test]
async fn up_works_only_beneath_its_volume_roots_and_off_its_catalog() {
    let data = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let vg = unique("uproots");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let real = |p: &std::path::Path| std::fs::canonicalize(p).unwrap().display().to_string();
    // An /etc-like directory outside every root, and a second root.
    let etc = elsewhere.path().join("etc");
    let srv = elsewhere.path().join("srv");
    let cams = srv.join("cams");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&cams).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    for f in [etc.join("shadow"), cams.join("frame.jpg")] {
        std::fs::write(&f, b"keep me").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let srv_arg = srv.to_str().unwrap().to_owned();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let up = start_tiering_with(
        data.path(),
        &vg,
        &["--volume-root", &srv_arg, "--volume-root", &data_arg],
        &[],
    )
    .await;
    let roots = format!(
        "{}, {}, {}",
        real(&data.path().join("volumes")),
        real(&srv),
        real(data.path())
    );

    let e = ctl(
        data.path(),
        &["volume", "add", "keys", etc.to_str().unwrap()],
    )
    .unwrap_err();
    assert!(
        e.contains(&format!(
            "path: {}: not beneath a volume root of this node ({roots})",
            real(&etc)
        )),
        "{e}"
    );
    // The catalog's own data, though beneath a root (--volume-root DATA).
    for (path, relation) in [
        (data.path().join("catalog"), "is"),
        (data.path().to_owned(), "contains"),
    ] {
        let e = ctl(
            data.path(),
            &["volume", "add", "cat", path.to_str().unwrap()],
        )
        .unwrap_err();
        assert!(
            e.contains(&format!(
                "path: {}: {relation} the catalog's own data at {}",
                real(&path),
                real(&data.path().join("catalog"))
            )),
            "{e}"
        );
    }
    let volumes = ctl(data.path(), &["volume", "ls"]).unwrap().to_string();
    assert!(
        !volumes.contains("\"keys\"") && !volumes.contains("\"cat\""),
        "{volumes}"
    );
    // Beneath --volume-root: registered.
    ctl(data.path(), &["volume", "add", "cams", &real(&cams)]).unwrap();
    drop(up);

    // Restarted without that root: cams is outside, and a policy over
    // every volume leaves it alone.
    let up = start_tiering(data.path(), &vg).await;
    let policy = data.path().join("all.yaml");
    std::fs::write(
        &policy,
        format!(
            "name: all\nselector: {{volumes: [\"*\"]}}\nlake: {{url: \"file://{}\"}}\n\
             rules:\n  - name: old\n    modifiedBefore: 1d\n    action: move\n",
            data.path().join("lake").display()
        ),
    )
    .unwrap();
    ctl(
        data.path(),
        &["policy", "apply", "-f", policy.to_str().unwrap()],
    )
    .unwrap();
    let runs = ctl(data.path(), &["run", "now"]).unwrap().to_string();
    assert!(!runs.contains("cams"), "{runs}");
    let e = ctl(data.path(), &["run", "now", "--volume", "cams"]).unwrap_err();
    assert!(e.contains("not beneath a volume root"), "{e}");
    assert_eq!(std::fs::read(cams.join("frame.jpg")).unwrap(), b"keep me");
    assert_eq!(std::fs::read(etc.join("shadow")).unwrap(), b"keep me");
    let recorded = files(data.path());
    assert!(
        recorded.iter().all(|r| r["volume"] != "cams"),
        "{recorded:?}"
    );
    let status = ctl(data.path(), &["status"]).unwrap();
    let cams_status = status["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "cams")
        .cloned()
        .unwrap();
    let why = cams_status["refused"].as_str().unwrap_or_default();
    assert!(
        why.starts_with(&format!("{}: not beneath a volume root", real(&cams))),
        "{status}"
    );
    drop(up);
}

/// An S3 lake in a real deployment needs its endpoint: `--lake-option`
/// gives every s3:// lake of the process its options (here a real S3
/// endpoint, moto), the policy says where its credentials come from, and a
/// file moves there verified. Bad options stop the start, naming the key.
#[tokio::test]
async fn up_moves_to_an_s3_lake_with_lake_options() {
    for (args, want) in [
        (
            vec!["--lake-option", "colour=red"],
            "lake.colour: unknown option",
        ),
        (vec!["--lake-option", "endpoint"], "expected KEY=VALUE"),
        (
            vec!["--lake-option", "credentials=env"],
            "lake.credentials: set by each policy",
        ),
        (
            vec!["--lake-option", "region=a", "--lake-option", "region=b"],
            "lake.region: given more than once",
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(strata_bin())
            .args(["up", "--data-dir"])
            .arg(data.path())
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    let moto = moto::Moto::start();
    moto.create_bucket("lake");
    let data = tempfile::tempdir().unwrap();
    let vg = unique("ups3");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let options = format!("endpoint={},allow_http=true", moto.endpoint());
    let up = start_tiering_with(
        data.path(),
        &vg,
        &["--site", "plant-7"],
        &[
            ("STRATA_LAKE_OPTIONS", options.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing-secret"),
        ],
    )
    .await;
    let policy = data.path().join("s3.yaml");
    std::fs::write(
        &policy,
        "name: s3\nselector: {volumes: [\"demo\"]}\nlake: {url: \"s3://lake/edge\", credentials: env}\n\
         keyTemplate: \"{site}/{volume}/{path}\"\n\
         rules:\n  - name: logs\n    include: [\"**/*.log\"]\n    action: move\n",
    )
    .unwrap();
    ctl(
        data.path(),
        &["policy", "apply", "-f", policy.to_str().unwrap()],
    )
    .unwrap();
    let demo = data.path().join("volumes/demo");
    let body: Vec<u8> = (0..70_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(demo.join("line.log"), &body).unwrap();
    ctl(data.path(), &["run", "now"]).unwrap();
    let f: Vec<_> = files(data.path())
        .into_iter()
        .filter(|f| f["path"] == "line.log")
        .collect();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["state"], "released", "{f:?}");
    let key = f[0]["lake_key"].as_str().unwrap();
    assert_eq!(key, format!("plant-7/demo/line.log.{}", sha256_hex(&body)));
    assert!(!demo.join("line.log").exists());
    // The object is in the bucket, under the lake's prefix, byte for byte.
    let config = strata_tiering::lake::LakeConfig::parse_with_env(
        "s3://lake/edge",
        [("endpoint", moto.endpoint()), ("allow_http", "true".into())],
        |k| match k {
            "AWS_ACCESS_KEY_ID" => Some("testing".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("testing-secret".into()),
            _ => None,
        },
    )
    .unwrap();
    let lake = strata_tiering::lake::Lake::open(&config).unwrap();
    let back = data.path().join("back");
    let sha: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&body).into();
    lake.download(key, &back, body.len() as u64, sha)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), body);
    drop(up);
}

#[tokio::test]
async fn up_with_its_metrics_port_taken_fails_naming_the_flag() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("upvg");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(strata_bin())
        .args(["up", "--size-gib", "1", "--volume-group", &vg, "--data-dir"])
        .arg(data.path())
        .args(["--metrics-addr", &taken.local_addr().unwrap().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("strata up kept running with its metrics port taken");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--metrics-addr") && stderr.contains("in use"),
        "{stderr}"
    );
    // Failed before it served anything.
    assert!(!data.path().join("csi.sock").exists(), "{stderr}");
}

/// The site's time zone reaches the agent: named with --site-timezone (or
/// its variable, which an empty value leaves unset), else taken from TZ,
/// and shown by `strata ctl status`. A name that is no zone, or a TZ that
/// names none, stops the start before anything is made, naming the flag or
/// the variable and the value.
#[tokio::test]
async fn up_reads_schedules_in_the_site_timezone() {
    let data = tempfile::tempdir().unwrap();
    let vg = unique("uptz");
    let _cleanup = Cleanup {
        vg: vg.clone(),
        pv: data.path().join("lvm/pv.img"),
    };
    for (flags, env, said) in [
        (
            &["--site-timezone", "Europe/Berln"][..],
            &[][..],
            "invalid value 'Europe/Berln' for '--site-timezone <ZONE>': not an IANA time zone name",
        ),
        (
            &[],
            &[("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")],
            "TZ \"CET-1CEST,M3.5.0,M10.5.0/3\": not an IANA time zone name",
        ),
    ] {
        let out = Command::new(strata_bin())
            .args(["up", "--size-gib", "1", "--volume-group", &vg, "--data-dir"])
            .arg(data.path())
            .args(["--metrics-addr", &format!("127.0.0.1:{}", free_port())])
            .args(flags)
            .envs(env.iter().copied())
            .env_remove("STRATA_SITE_TIMEZONE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(!data.path().join("lvm").exists(), "{stderr}");
    }

    let zone_of = |data: &std::path::Path| ctl(data, &["status"]).unwrap()["site_timezone"].clone();
    let tokyo = [("TZ", "Asia/Tokyo")];
    let up = start_tiering_with(
        data.path(),
        &vg,
        &["--site-timezone", "Europe/Berlin"],
        &tokyo,
    )
    .await;
    assert_eq!(
        zone_of(data.path()),
        serde_json::json!({"name": "Europe/Berlin", "source": "--site-timezone"})
    );
    drop(up);
    let env = [
        ("TZ", "Asia/Tokyo"),
        ("STRATA_SITE_TIMEZONE", "America/Chicago"),
    ];
    let up = start_tiering_with(data.path(), &vg, &[], &env).await;
    assert_eq!(
        zone_of(data.path()),
        serde_json::json!({"name": "America/Chicago", "source": "--site-timezone"})
    );
    drop(up);
    let env = [("TZ", "Asia/Tokyo"), ("STRATA_SITE_TIMEZONE", "")];
    let _up = start_tiering_with(data.path(), &vg, &[], &env).await;
    assert_eq!(
        zone_of(data.path()),
        serde_json::json!({"name": "Asia/Tokyo", "source": "TZ"})
    );
    let endpoint = format!("unix://{}", data.path().join("strata.sock").display());
    let out = Command::new(strata_bin())
        .args(["ctl", "--endpoint", &endpoint, "status"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("\ntimezone  Asia/Tokyo (from TZ)\n"),
        "{screen}"
    );
}
