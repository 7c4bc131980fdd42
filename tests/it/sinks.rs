//! Alert sinks against real local endpoints: a file, and an HTTP listener on loopback
//! standing in for a Slack-compatible webhook (a real server socket, not a mock of a client).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kms_audit::detect::Alert;
use kms_audit::detect::sinks::{AlertSink, FileSink, deliver_all, parse_sink};

fn alert(id: &str) -> Alert {
    serde_json::from_value(serde_json::json!({
        "rule_id": "kms_key_disabled", "title": "KMS key disabled", "severity": "high",
        "first_seen": "2026-11-03T14:00:00Z", "last_seen": "2026-11-03T14:00:00Z", "count": 1,
        "principal": "arn:aws:iam::111122223333:user/mallory",
        "key_arn": "arn:aws:kms:us-east-1:111122223333:key/k1", "account_id": "111122223333",
        "aws_region": "us-east-1", "source_ips": ["203.0.113.66"], "event_ids": [id],
        "summary": "DisableKey on k1 by mallory", "dedup_key": format!("kms_key_disabled:{id}")
    }))
    .expect("alert")
}

/// Serves HTTP on loopback, answering with `statuses` in turn (the last one repeats), and
/// records each request body.
fn listener(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in l.incoming().enumerate().take(50) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut len = 0usize;
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            seen.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&body).into_owned());
            let status = statuses.get(n).or(statuses.last()).copied().unwrap_or(200);
            // A redirect points back at this listener, so following it would be seen.
            let location = if (300..400).contains(&status) {
                format!("Location: http://{addr}/elsewhere\r\n")
            } else {
                String::new()
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{location}Content-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (format!("http://{addr}/services/T000/B000/secret"), bodies)
}

#[test]
fn webhook_posts_slack_messages_and_retries_failures() {
    let (url, bodies) = listener(vec![500, 200]);
    let sink = parse_sink(&url).expect("sink");
    assert_eq!(
        sink.describe(),
        format!("http://{}/...", url.split('/').nth(2).unwrap_or(""))
    );
    let sinks: Vec<Box<dyn AlertSink>> = vec![sink];
    let failures = deliver_all(&sinks, &[alert("e-1")], 3, Duration::from_millis(10));
    assert!(failures.is_empty(), "{failures:?}");
    let bodies = bodies.lock().expect("lock").clone();
    assert_eq!(bodies.len(), 2, "one failed attempt, one success");
    let msg: serde_json::Value = serde_json::from_str(&bodies[1]).expect("json");
    assert!(
        msg["text"]
            .as_str()
            .expect("text")
            .contains("[HIGH] KMS key disabled")
    );
    assert_eq!(msg["blocks"].as_array().map(Vec::len), Some(2));
    assert_eq!(msg["alert"]["event_ids"][0], "e-1");
}

#[test]
fn a_failing_sink_is_reported_not_dropped() {
    let (url, bodies) = listener(vec![503]);
    let sinks: Vec<Box<dyn AlertSink>> = vec![parse_sink(&url).expect("sink")];
    let failures = deliver_all(&sinks, &[alert("e-2")], 3, Duration::from_millis(10));
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].attempts, 3);
    assert!(failures[0].to_string().contains("503"), "{}", failures[0]);
    assert!(
        !failures[0].to_string().contains("secret"),
        "webhook secrets stay out of messages"
    );
    assert_eq!(bodies.lock().expect("lock").len(), 3);
    assert!(parse_sink("sns:arn:aws:sns:us-east-1:1:x").is_err());
}

#[test]
fn file_sink_appends_ndjson() {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = tmp.path().join("out/alerts.ndjson");
    let sink = FileSink { path: path.clone() };
    sink.deliver(&[alert("a"), alert("b")]).expect("deliver");
    sink.deliver(&[alert("c")]).expect("deliver");
    let lines: Vec<Alert> = std::fs::read_to_string(&path)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert"))
        .collect();
    let ids: Vec<&str> = lines.iter().map(|a| a.event_ids[0].as_str()).collect();
    assert_eq!(ids, vec!["a", "b", "c"]);
}

#[test]
fn aws_sink_specs_name_their_service() {
    use kms_audit::detect::sinks::AwsSinkSpec;
    assert_eq!(
        AwsSinkSpec::parse("securityhub"),
        Some(AwsSinkSpec::SecurityHub)
    );
    assert_eq!(
        AwsSinkSpec::parse("eventbridge"),
        Some(AwsSinkSpec::EventBridge(None))
    );
    assert_eq!(
        AwsSinkSpec::parse("eventbridge:security"),
        Some(AwsSinkSpec::EventBridge(Some("security".into())))
    );
    assert_eq!(
        AwsSinkSpec::parse("arn:aws:sns:us-east-1:111122223333:alerts"),
        Some(AwsSinkSpec::Sns(
            "arn:aws:sns:us-east-1:111122223333:alerts".into()
        ))
    );
    for not_aws in ["eventbridge:", "file:x", "https://hooks.example/x", "sns"] {
        assert_eq!(AwsSinkSpec::parse(not_aws), None, "{not_aws}");
    }
    let err = parse_sink("sns")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("securityhub") && err.contains("eventbridge"),
        "{err}"
    );
}

#[test]
fn webhooks_need_https_and_never_follow_redirects() {
    for insecure in [
        "http://hooks.example.com/services/T/B/secret",
        "http://10.0.0.5/hook/secret",
    ] {
        let err = parse_sink(insecure)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("use https://"), "{err}");
        assert!(
            !err.contains("secret"),
            "the path stays out of the message: {err}"
        );
    }
    assert!(parse_sink("https://hooks.example.com/x").is_ok());
    assert!(parse_sink("http://localhost:8080/x").is_ok());
    assert!(parse_sink("http://[::1]:8080/x").is_ok());

    let (url, bodies) = listener(vec![302]);
    let sinks: Vec<Box<dyn AlertSink>> = vec![parse_sink(&url).expect("sink")];
    let failures = deliver_all(&sinks, &[alert("r1")], 2, Duration::from_millis(10));
    assert_eq!(failures.len(), 1, "a redirect fails the delivery");
    assert!(!failures[0].to_string().contains("secret"));
    let seen = bodies.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        2,
        "one POST per attempt, no request to the redirect target"
    );
    assert!(seen.iter().all(|b| b.contains("\"r1\"")), "{seen:?}");
}
