//! `omp-discord notify` and friends as a script runs them: the real binary as
//! a child process, talking to a real sidecar (directly, or through an SSH
//! forward of its socket) that posts to the emulator.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use omp_discord_core::embed::{Level, TRUNCATION_MARKER, limits};
use omp_discord_emulator::{DEFAULT_HOME_CHANNEL_ID, Emulator};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::util::{
    Plugin, Sidecar, TestDir, all_message_posts, emulator, emulator_request, message_posts, run_omp, sidecar_bin,
    sidecar_env, thread_messages, thread_starts, wait_for,
};

/// What one CLI run left behind.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|err| panic!("{err}: {}", self.stdout))
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// The CLI's environment: a HOME and the socket, nothing else (no token: the CLI never needs one).
fn cli_env(home: &Path, socket: &Path) -> Vec<(String, String)> {
    vec![
        ("HOME".to_owned(), home.display().to_string()),
        ("OMP_DISCORD_SOCKET".to_owned(), socket.display().to_string()),
    ]
}

/// Runs `omp-discord ARGS` in `cwd` with exactly `env` (plus PATH), feeding `stdin`.
async fn cli(env: &[(String, String)], cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = tokio::process::Command::new(sidecar_bin())
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(bytes).await.unwrap();
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the CLI finishes within 60 s")
        .unwrap();
    Run {
        code: output.status.code().expect("an exit code, not a signal"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The one embed of a recorded message POST.
fn embed(post: &Value) -> &Value {
    &post["body"]["embeds"][0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_delivers_into_one_thread_per_directory() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let env = cli_env(&dir.home(), &sidecar.socket);
    let project = dir.path().join("project");

    let first =
        cli(&env, &project, &["notify", "--level", "success", "--title", "backup", "backup finished"], None).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.starts_with("delivered: message "), "{first:?}");

    // The directory's thread, named after it, holds exactly the one message.
    let starts = thread_starts(&emulator);
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(starts[0]["body"]["name"], "project · notifications");
    let thread: u64 = starts[0]["response"]["id"].as_str().unwrap().parse().unwrap();
    let posts = message_posts(&emulator, thread);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let note = embed(&posts[0]);
    assert_eq!((note["title"].as_str(), note["description"].as_str()), (Some("backup"), Some("backup finished")));
    assert_eq!(note["color"], Level::Success.color());
    assert_eq!(note["footer"]["text"].as_str().map(|f| f.contains("project")), Some(true), "{note}");
    assert_eq!(posts[0]["body"]["allowed_mentions"], json!({ "parse": [] }));
    assert!(first.stdout.contains(posts[0]["response"]["id"].as_str().unwrap()), "{first:?}");

    // A second run from the same directory, as JSON, lands in the same thread.
    let second = cli(&env, &project, &["notify", "--json", "second run"], None).await;
    assert_eq!(second.code, 0, "{second:?}");
    let outcome = second.json();
    assert_eq!(outcome["outcome"], "delivered");
    assert_eq!(outcome["exit_code"], 0);
    assert_eq!(outcome["channel_id"], thread.to_string());
    assert!(outcome["session"].as_str().unwrap().starts_with("cli-project-"), "{outcome}");
    assert_eq!(thread_starts(&emulator).len(), 1, "no second thread");
    let texts: Vec<_> =
        thread_messages(&emulator, thread).iter().map(|m| m["embeds"][0]["description"].clone()).collect();
    assert_eq!(texts, [json!("backup finished"), json!("second run")]);

    // Another directory gets its own thread; `--thread` goes back to the first one.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let elsewhere = cli(&env, &other, &["notify", "--json", "from elsewhere"], None).await;
    assert_eq!(elsewhere.code, 0, "{elsewhere:?}");
    assert_ne!(elsewhere.json()["channel_id"], thread.to_string());
    let session = outcome["session"].as_str().unwrap();
    let back = cli(&env, &other, &["notify", "--json", "--thread", session, "into the first thread"], None).await;
    assert_eq!(back.json()["channel_id"], thread.to_string(), "{back:?}");
    assert_eq!(thread_starts(&emulator).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_channel_posts_into_the_home_channel_without_a_thread() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let env = cli_env(&dir.home(), &sidecar.socket);
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();

    let run =
        cli(&env, dir.path(), &["notify", "--json", "--channel", &home, "--level", "warning", "disk 91%"], None).await;
    assert_eq!(run.code, 0, "{run:?}");
    let outcome = run.json();
    assert_eq!((outcome["outcome"].as_str(), outcome["channel_id"].as_str()), (Some("delivered"), Some(&*home)));
    assert!(thread_starts(&emulator).is_empty(), "no thread for --channel");
    let posts = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(embed(&posts[0])["description"], "disk 91%");
    assert_eq!(embed(&posts[0])["color"], Level::Warning.color());
    assert_eq!(posts[0]["response"]["id"], outcome["message_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_to_an_unknown_channel_fails_with_discords_message() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let env = cli_env(&dir.home(), &sidecar.socket);

    let run = cli(&env, dir.path(), &["notify", "--channel", "1100000000000009999", "hello?"], None).await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    // Discord's own words (HTTP 404, code 10003 "Unknown Channel") and what to do.
    assert!(run.stderr.contains("failed (unknown_channel)"), "{run:?}");
    assert!(run.stderr.contains("10003") && run.stderr.contains("Unknown Channel"), "{run:?}");
    assert!(run.stderr.contains("Copy Channel ID"), "{run:?}");

    let posts = message_posts(&emulator, 1_100_000_000_000_009_999);
    assert_eq!(posts.len(), 1, "one attempt, no retries of a refusal: {posts:#?}");
    assert_eq!(posts[0]["status"], 404);

    let json = cli(&env, dir.path(), &["notify", "--json", "--channel", "1100000000000009999", "again"], None).await;
    assert_eq!(json.code, 1);
    let outcome = json.json();
    assert_eq!((outcome["outcome"].as_str(), outcome["code"].as_str()), (Some("failed"), Some("unknown_channel")));
    assert!(outcome["message"].as_str().unwrap().contains("Unknown Channel"), "{outcome}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_reads_stdin_redacts_it_and_says_when_it_cuts() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let env = cli_env(&dir.home(), &sidecar.socket);

    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
    let mut input = format!("deploy log\nGITHUB_TOKEN={secret}\n");
    for line in 0..400 {
        input.push_str(&format!("step {line:03}: ok\n"));
    }
    assert!(input.chars().count() > limits::DESCRIPTION);
    let run = cli(&env, dir.path(), &["notify", "--level", "error", "-"], Some(input.as_bytes())).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("was cut") && run.stderr.contains("4096"), "says it cut: {run:?}");

    let posts: Vec<Value> = all_message_posts(&emulator)
        .into_iter()
        .filter(|p| embed(p)["description"].as_str().is_some_and(|d| d.starts_with("deploy log")))
        .collect();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let text = embed(&posts[0])["description"].as_str().unwrap();
    assert!(!text.contains(secret) && text.contains("[REDACTED:"), "{text}");
    assert!(text.contains("step 000: ok") && text.ends_with(TRUNCATION_MARKER), "{text}");
    assert_eq!(text.chars().count(), limits::DESCRIPTION);
    // Nowhere else either: not in what the emulator stored, not in the sidecar's log.
    assert!(!emulator.state().snapshot().to_string().contains(secret));
    assert!(!sidecar.log().contains(secret));

    // Empty input is refused before anything is sent.
    let empty = cli(&env, dir.path(), &["notify", "-"], Some(b"  \n")).await;
    assert_eq!(empty.code, 2, "{empty:?}");
    assert!(empty.stderr.contains("empty"), "{empty:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_without_a_sidecar_is_spooled_and_the_next_sidecar_delivers_it_once() {
    let dir = TestDir::new();
    let env = cli_env(&dir.home(), &dir.socket());
    let spool = dir.home().join(".local/state/omp-discord/spool");

    let run = cli(&env, dir.path(), &["notify", "anyone there?"], None).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("spooled: no omp-discord sidecar is running at"), "{run:?}");
    assert!(run.stderr.contains("omp-discord serve") && run.stderr.contains("install-service"), "{run:?}");
    assert!(!dir.socket().exists(), "notify does not start a sidecar");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&spool), 0o700);
    let files: Vec<_> = std::fs::read_dir(&spool).unwrap().map(|entry| entry.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    // The same file handed over twice (a replay after a lost answer) is still one message.
    std::fs::copy(&files[0], spool.join("0-copy.jsonl")).unwrap();

    // A stale socket file (a sidecar killed with -9) is the same situation.
    std::fs::create_dir_all(dir.socket().parent().unwrap()).unwrap();
    std::fs::set_permissions(dir.socket().parent().unwrap(), std::fs::Permissions::from_mode(0o700)).unwrap();
    drop(std::os::unix::net::UnixListener::bind(dir.socket()).unwrap());
    let stale = cli(&env, dir.path(), &["notify", "--json", "still nobody?"], None).await;
    assert_eq!(stale.code, 3, "{stale:?}");
    assert_eq!(stale.json()["outcome"], "spooled");
    assert!(stale.json()["file"].as_str().unwrap().starts_with(spool.to_str().unwrap()), "{stale:?}");

    // Nowhere to spool: the message is lost, and the command says so (69).
    let mut unwritable = env.clone();
    unwritable.push(("OMP_DISCORD_STATE_DIR".into(), "/dev/null/state".into()));
    let lost = cli(&unwritable, dir.path(), &["notify", "--json", "lost"], None).await;
    assert_eq!(lost.code, 69, "{lost:?}");
    assert_eq!(lost.json()["outcome"], "no_sidecar");
    assert!(lost.json()["message"].as_str().unwrap().contains("could not be spooled"), "{lost:?}");

    // The next sidecar journals every spooled message exactly once.
    let emulator = emulator().await;
    let _sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    wait_for("the spool to be imported and delivered", Duration::from_secs(30), || {
        (std::fs::read_dir(&spool).unwrap().next().is_none()
            && posts_with(&emulator, "anyone there?") >= 1
            && posts_with(&emulator, "still nobody?") >= 1)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(posts_with(&emulator, "anyone there?"), 1);
    assert_eq!(posts_with(&emulator, "still nobody?"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_while_discord_is_down_is_queued_and_delivered_later_once() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let env = cli_env(&dir.home(), &sidecar.socket);
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();

    // Every post fails with 503 until the fault is cleared.
    emulator
        .state()
        .set_faults(&json!({"http": {"status": 503, "method": "POST", "path_prefix": "/channels"}}))
        .unwrap();
    let run =
        cli(&env, dir.path(), &["notify", "--json", "--wait", "2", "--channel", &home, "nightly build"], None).await;
    assert_eq!(run.code, 75, "{run:?}");
    let outcome = run.json();
    assert_eq!(outcome["outcome"], "queued");
    assert!(outcome["seq"].as_i64().is_some(), "{outcome}");
    assert!(message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID).iter().all(|p| p["status"] == 503));

    let (cleared, _) = emulator_request(&emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(cleared, 204);
    let delivered = |emulator: &Emulator| {
        emulator
            .state()
            .messages(DEFAULT_HOME_CHANNEL_ID)
            .into_iter()
            .filter(|m| m["embeds"][0]["description"] == "nightly build")
            .count()
    };
    wait_for("the queued message to be delivered", Duration::from_secs(60), || {
        (delivered(&emulator) > 0).then_some(())
    })
    .await;
    // The sidecar's queue drains, and the message is there once.
    let status = cli(&env, dir.path(), &["status", "--json"], None).await;
    assert_eq!(status.json()["queue"]["depth"], 0, "{status:?}");
    assert_eq!(delivered(&emulator), 1);
}

/// A private OpenSSH server on a random loopback port with a throwaway host key
/// and one authorized key, all inside the test's directory; killed on drop.
struct Sshd {
    child: tokio::process::Child,
    port: u16,
    dir: PathBuf,
    user: String,
}

impl Sshd {
    async fn start(dir: &Path) -> Self {
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("OpenSSH's sshd is installed (scripts/build.sh installs openssh-server)");
        let dir = dir.join("ssh");
        std::fs::create_dir_all(&dir).unwrap();
        for key in ["host_key", "id"] {
            let status = std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", "omp-discord-test", "-f"])
                .arg(dir.join(key))
                .status()
                .expect("ssh-keygen runs");
            assert!(status.success());
        }
        std::fs::copy(dir.join("id.pub"), dir.join("authorized_keys")).unwrap();
        let user = String::from_utf8(std::process::Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        if rustix::process::getuid().is_root() {
            // Debian's sshd refuses to start as root without its privilege-separation directory.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        // A free port can be taken between asking and binding: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                     PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                     AllowStreamLocalForwarding yes\nLogLevel VERBOSE\n",
                    d = dir.display()
                ),
            )
            .unwrap();
            let log = dir.join("sshd.log");
            let child = tokio::process::Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .kill_on_drop(true)
                .spawn()
                .expect("sshd starts");
            let mut sshd = Self { child, port, dir: dir.clone(), user: user.clone() };
            let listening = wait_for("sshd to listen or fail", Duration::from_secs(15), || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Server listening") {
                    Some(true)
                } else if sshd.child.try_wait().unwrap().is_some() {
                    Some(false)
                } else {
                    None
                }
            })
            .await;
            if listening {
                return sshd;
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(text.contains("Address already in use"), "sshd did not start: {text}");
        }
        panic!("no free port for sshd after 5 tries");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }

    /// `ssh -N -L local:remote`, checking the server's host key against a
    /// known_hosts file made from the throwaway key; killed on drop.
    async fn forward(&self, home: &Path, local: &Path, remote: &Path) -> tokio::process::Child {
        let known_hosts = self.dir.join("known_hosts");
        let host_key = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{} {host_key}", self.port)).unwrap();
        let log = self.dir.join("ssh.log");
        let mut child = tokio::process::Command::new("ssh")
            .args(["-F", "/dev/null", "-N", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "ExitOnForwardFailure=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(self.dir.join("id"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-L")
            .arg(format!("{}:{}", local.display(), remote.display()))
            .arg(format!("{}@127.0.0.1", self.user))
            .env("HOME", home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("ssh (openssh-client) runs");
        wait_for("ssh to create the forwarded socket", Duration::from_secs(20), || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "ssh exited: {}\nsshd: {}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                self.log()
            );
            local.exists().then_some(())
        })
        .await;
        child
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machine_reaches_the_sidecar_through_an_ssh_forwarded_socket() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    wait_for("the sidecar's gateway to identify", Duration::from_secs(20), || {
        (emulator.state().identify_count() == 1).then_some(())
    })
    .await;

    // "Machine B": its own HOME and project, and only a forwarded socket to the sidecar.
    let machine_b = dir.path().join("machine-b");
    let (home_b, project_b) = (machine_b.join("home"), machine_b.join("api"));
    std::fs::create_dir_all(&home_b).unwrap();
    std::fs::create_dir_all(&project_b).unwrap();
    let forwarded = machine_b.join("sidecar.sock");
    let sshd = Sshd::start(dir.path()).await;
    let _ssh = sshd.forward(&home_b, &forwarded, &sidecar.socket).await;
    let env_b = cli_env(&home_b, &forwarded);

    let run =
        cli(&env_b, &project_b, &["notify", "--json", "--level", "success", "deployed from machine B"], None).await;
    assert_eq!(run.code, 0, "{run:?}\nsidecar: {}\nsshd: {}", sidecar.log(), sshd.log());
    let outcome = run.json();
    assert_eq!(outcome["outcome"], "delivered");

    // Delivered once, into the thread of machine B's directory.
    let starts = thread_starts(&emulator);
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(starts[0]["body"]["name"], "api · notifications");
    assert_eq!(starts[0]["response"]["id"], outcome["channel_id"]);
    let thread: u64 = outcome["channel_id"].as_str().unwrap().parse().unwrap();
    let posts = message_posts(&emulator, thread);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(embed(&posts[0])["description"], "deployed from machine B");

    // `status` through the forward shows this very sidecar, with machine B's session.
    let status = cli(&env_b, &project_b, &["status", "--json"], None).await;
    assert_eq!(status.code, 0, "{status:?}");
    let status = status.json();
    assert_eq!(status["pid"], sidecar.pid());
    assert_eq!(status["socket"], sidecar.socket.display().to_string(), "the socket on the sidecar's side");
    let sessions = status["sessions"].as_array().unwrap();
    let session = sessions.iter().find(|s| s["session_id"] == outcome["session"]).expect("machine B's session");
    assert_eq!(session["host"], omp_discord_hostname());
    assert_eq!(session["thread_id"], outcome["channel_id"]);

    // The peer the sidecar saw was sshd's session process, running as this user: accepted.
    assert!(!sidecar.log().contains("refused a connection from another user"), "{}", sidecar.log());
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    // One sidecar, one gateway connection, for both "machines".
    assert_eq!(emulator.state().identify_count(), 1);
}

/// How many recorded requests (posts, and edits of the run card) carry `text`.
fn posts_with(emulator: &Emulator, text: &str) -> usize {
    emulator.requests().iter().filter(|r| r.body.to_string().contains(text)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_spooled_on_a_second_machine_arrive_once_its_forward_is_back() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;

    // Machine B runs OMP while its forward is down (and starts no sidecar of its own):
    // the run's reports are spooled on machine B, where the sidecar cannot see them.
    let machine_b = dir.path().join("machine-b");
    let home_b = machine_b.join("home");
    std::fs::create_dir_all(&home_b).unwrap();
    let forwarded = machine_b.join("sidecar.sock");
    let mut env_b = cli_env(&home_b, &forwarded);
    env_b.push(("OMP_DISCORD_SPAWN".to_owned(), "off".to_owned()));
    let offline =
        run_omp(&dir, &env_b, Plugin::Flag, &json!([{ "text": "answer while offline" }]), "work offline").await;
    assert!(offline.status.success(), "{}", offline.stderr);
    let spool = home_b.join(".local/state/omp-discord/spool");
    let spooled = || -> Vec<PathBuf> {
        std::fs::read_dir(&spool).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    assert_eq!(spooled().len(), 1, "one spool file on machine B: {:?}", spooled());
    assert_eq!(posts_with(&emulator, "answer while offline"), 0);

    // The forward is back: the next OMP on machine B hands the spooled run over, then its own.
    let sshd = Sshd::start(dir.path()).await;
    let _ssh = sshd.forward(&home_b, &forwarded, &sidecar.socket).await;
    let online = run_omp(&dir, &env_b, Plugin::Flag, &json!([{ "text": "answer once back" }]), "work online").await;
    assert!(online.status.success(), "{}", online.stderr);
    wait_for("both runs in Discord", Duration::from_secs(30), || {
        (posts_with(&emulator, "answer while offline") > 0 && posts_with(&emulator, "answer once back") > 0)
            .then_some(())
    })
    .await;
    assert_eq!(posts_with(&emulator, "answer while offline"), 1, "the spooled run arrives exactly once");
    assert_eq!(posts_with(&emulator, "answer once back"), 1);
    assert!(spooled().is_empty(), "machine B's spool is empty: {:?}", spooled());
    assert_eq!(emulator.state().identify_count(), 1);
}

/// The host name the CLI puts in its handshake (this machine's `uname -n`).
fn omp_discord_hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
