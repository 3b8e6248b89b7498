//! Real CloudEvents SDK clients on both sides of stephost (issue #21 item
//! 10): the JavaScript SDK 10 and 8 (npm) and the Python SDK 2.x and 1.x
//! (PyPI), all installed by tests/run.sh, send events with text attributes
//! HTTP carries but the CloudEvents HTTP binding would percent-encode
//! (space, `"`, `%`), and read stephost's binary-mode answer themselves.

use serde_json::Value;

use crate::events::host;

const SUBJECT: &str = "hello world";
const NOTE: &str = r#"50% off "now" (a%41)"#;

/// One client: its name and the command that runs it against a URL.
struct Client {
    name: &'static str,
    program: String,
    /// The script.
    script: String,
    /// Arguments after the URL.
    after: Vec<String>,
    env: Vec<(&'static str, String)>,
}

fn repo(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn clients() -> Vec<Client> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let node = |sdk: &str| Client {
        name: if sdk == "cloudevents10" {
            "js-10"
        } else {
            "js-8"
        },
        program: "node".into(),
        script: repo("tests/js/attributes.js"),
        after: vec![sdk.into()],
        env: Vec::new(),
    };
    let one = repo("target/test-clients/python-cloudevents-1");
    assert!(
        std::path::Path::new(&one).join("cloudevents").is_dir(),
        "the Python SDK 1.x is not installed at {one}: run tests/run.sh"
    );
    assert!(
        std::path::Path::new(&repo("tests/js/node_modules/cloudevents10")).is_dir(),
        "the JavaScript SDKs are not installed: run tests/run.sh (npm ci --prefix tests/js)"
    );
    vec![
        Client {
            name: "python-2",
            program: python.clone(),
            script: repo("tests/python/attributes.py"),
            after: Vec::new(),
            env: Vec::new(),
        },
        Client {
            name: "python-1",
            program: python,
            script: repo("tests/python/attributes.py"),
            after: Vec::new(),
            env: vec![("PYTHONPATH", one)],
        },
        node("cloudevents10"),
        node("cloudevents8"),
    ]
}

/// Run `client` against `url`: the two JSON lines it printed.
async fn run(client: &Client, url: &str) -> Vec<Value> {
    let mut command = std::process::Command::new(&client.program);
    command.arg(&client.script).arg(url).args(&client.after);
    for (k, v) in &client.env {
        command.env(k, v);
    }
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("run {}: {e}", client.name));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{} failed:\n{stdout}\n{}",
        client.name,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_read_back_the_attributes_they_sent() {
    let host = host(&[]).await;
    let url = format!("{}/sequences/solo", host.url);
    for client in clients() {
        let lines = run(&client, &url).await;
        assert_eq!(lines.len(), 2, "{}: {lines:?}", client.name);
        for line in lines {
            let who = format!("{} {}", client.name, line["mode"]);
            assert_eq!(line["status"], 200, "{who}: {line}");
            assert_eq!(line["subject"], SUBJECT, "{who}: {line}");
            assert_eq!(line["note"], NOTE, "{who}: {line}");
            assert_eq!(line["data"], "hi-x", "{who}: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_percent_encoding_the_sdks_see_the_escapes() {
    // `--attribute-encoding percent` is the CloudEvents HTTP binding's
    // letter; none of these SDKs decodes it, which is why raw is the default
    // (and the raw `%41` they sent is read as an escape: `A`).
    let host = host(&["--attribute-encoding", "percent"]).await;
    let url = format!("{}/sequences/solo", host.url);
    for client in clients() {
        for line in run(&client, &url).await {
            let who = format!("{} {}", client.name, line["mode"]);
            assert_eq!(line["status"], 200, "{who}: {line}");
            assert_eq!(line["subject"], "hello%20world", "{who}: {line}");
            // Binary-mode input is decoded (`%41` → `A`), structured is not.
            let note = if line["mode"] == "binary" {
                "50%25%20off%20%22now%22%20(aA)"
            } else {
                "50%25%20off%20%22now%22%20(a%2541)"
            };
            assert_eq!(line["note"], note, "{who}: {line}");
        }
    }
}
