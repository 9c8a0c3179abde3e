//! The subcommands that talk to a server: each sends its request through [`Client`] and prints
//! the answer as a table or as the server's JSON document. Returns the exit code.

use std::io::IsTerminal;
use std::time::Duration;

use http::Method;
use maestro_dag::RunStatus;
use serde_json::{Value, json};

use crate::cli::{
    Cli, Command, EventsArgs, GraphArgs, Output, PageArgs, RunArgs, RunsCommand, WorkflowsCommand,
};
use crate::client::{Client, query, segment};
use crate::exit::{self, Failure, truncate};
use crate::follow::{self, Sink};
use crate::output::{self, Table, short_time, text};
use crate::validate;
use crate::watch::{self, RunWatch};

/// Runs the parsed command line; the exit code, or a failure to report.
pub(crate) async fn dispatch(cli: Cli) -> Result<u8, Failure> {
    let format = cli.output;
    if let Command::Validate(args) = &cli.command {
        return validate::command(args, format);
    }
    let client = Client::new(
        &cli.server,
        cli.token.clone(),
        Duration::from_secs(cli.timeout),
    )?;
    match cli.command {
        Command::Validate(_) => unreachable!("handled above"),
        Command::Workflows(c) => workflows(&client, c, format).await,
        Command::Run(args) => run(&client, args, format).await,
        Command::Runs(c) => runs(&client, c, format).await,
        Command::Events(args) => events(&client, args, format).await,
        Command::Graph(args) => graph(&client, args).await,
    }
}

fn workflow_path(id: &str) -> String {
    format!("/api/v1/workflows/{}", segment(id))
}

fn run_path(id: &str) -> String {
    format!("/api/v1/runs/{}", segment(id))
}

fn page_query(page: &PageArgs, more: Vec<(&'static str, Option<String>)>) -> String {
    let mut pairs = more;
    pairs.push(("limit", Some(page.limit.to_string())));
    pairs.push(("offset", Some(page.offset.to_string())));
    query(&pairs)
}

/// A note on stderr when a list has more pages.
fn more_pages(answer: &Value) {
    if let Some(next) = answer["next_offset"].as_u64() {
        eprintln!("(more: --offset {next})");
    }
}

async fn workflows(client: &Client, c: WorkflowsCommand, format: Output) -> Result<u8, Failure> {
    match c {
        WorkflowsCommand::List(page) => {
            let answer = client
                .get(&format!(
                    "/api/v1/workflows{}",
                    page_query(&page, Vec::new())
                ))
                .await?;
            if format == Output::Json {
                output::json(&answer)?;
                return Ok(exit::SUCCESS);
            }
            let mut table = Table::new(&["WORKFLOW", "VERSION", "NODES", "CREATED", "NAME"]);
            for w in answer["workflows"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&w["workflow_id"]),
                    text(&w["version"]),
                    text(&w["nodes"]),
                    short_time(&w["created_at"]),
                    text(&w["name"]),
                ]);
            }
            table.print()?;
            more_pages(&answer);
        }
        WorkflowsCommand::Get { id, version } => {
            let path = format!(
                "{}{}",
                workflow_path(&id),
                query(&[("version", version.map(|v| v.to_string()))])
            );
            let answer = client.get(&path).await?;
            if format == Output::Json {
                output::json(&answer)?;
                return Ok(exit::SUCCESS);
            }
            let def = &answer["definition"];
            output::line(&format!(
                "workflow {} version {} ({})",
                text(&answer["workflow_id"]),
                text(&answer["version"]),
                text(&answer["content_hash"])
            ))?;
            if let Some(name) = def["name"].as_str() {
                output::line(&format!("name: {name}"))?;
            }
            if let Some(d) = def["description"].as_str() {
                output::line(&format!("description: {d}"))?;
            }
            output::line(&format!(
                "failure policy: {} · created {}",
                text(&def["failure_policy"]),
                short_time(&answer["created_at"])
            ))?;
            output::line("")?;
            let mut table = Table::new(&["NODE", "TYPE", "EXECUTOR", "DEPENDS ON", "CONDITION"]);
            for n in def["nodes"].as_array().into_iter().flatten() {
                let deps: Vec<&str> = n["depends_on"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                table.row(vec![
                    text(&n["id"]),
                    n["type"].as_str().unwrap_or("custom").to_string(),
                    text(&n["executor"]),
                    if deps.is_empty() {
                        "-".into()
                    } else {
                        deps.join(", ")
                    },
                    n["condition"]
                        .as_str()
                        .map_or_else(|| "-".into(), |c| truncate(c, 60)),
                ]);
            }
            table.print()?;
        }
        WorkflowsCommand::Apply { file } => {
            let (definition, text_of_file) = validate::load(&file)?;
            let body = serde_json::to_value(&definition).expect("definitions serialize");
            let answer = match client.post("/api/v1/workflows", Some(&body)).await {
                Ok(a) => a,
                Err(f) if f.code == exit::DATA => {
                    return Err(apply_problem(&file.display().to_string(), &text_of_file, f));
                }
                Err(f) => return Err(f),
            };
            if format == Output::Json {
                output::json(&answer)?;
                return Ok(exit::SUCCESS);
            }
            let id = text(&answer["workflow_id"]);
            let version = text(&answer["version"]);
            let what = match (answer["created"].as_bool(), answer["version"].as_u64()) {
                (Some(false), _) => format!("unchanged (version {version})"),
                (_, Some(1)) => "created (version 1)".to_string(),
                _ => format!("new version {version}"),
            };
            output::line(&format!("workflow {id}: {what}"))?;
        }
        WorkflowsCommand::Delete { id } => {
            client
                .send(Method::DELETE, &workflow_path(&id), None, &[])
                .await?;
            if format == Output::Json {
                output::json(&json!({"workflow_id": id, "deleted": true}))?;
            } else {
                output::line(&format!("workflow {id}: deleted"))?;
            }
        }
    }
    Ok(exit::SUCCESS)
}

/// A 422 (or other 4xx) from `apply`: its problems as diagnostics of the file, pointing at
/// the line of the node each one names.
fn apply_problem(file: &str, text: &str, f: Failure) -> Failure {
    let Some(problem) = &f.problem else {
        return f;
    };
    let first = f.lines.first().cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "{file}: the server refused the definition: {first}"
    )];
    let items = problem["errors"].as_array().cloned().unwrap_or_default();
    lines.extend(validate::problem_lines(file, text, &items));
    Failure::lines(f.code, lines)
}

async fn run(client: &Client, args: RunArgs, format: Output) -> Result<u8, Failure> {
    let inputs = match (&args.inputs, &args.inputs_file) {
        (Some(v), _) => v.clone(),
        (None, Some(path)) => {
            let text = validate::read(path)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    return Err(Failure::new(
                        exit::DATA,
                        format!("{}: the inputs must be a JSON object", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(Failure::new(
                        exit::DATA,
                        format!(
                            "{}:{}:{}: the inputs are not JSON: {e}",
                            path.display(),
                            e.line(),
                            e.column()
                        ),
                    ));
                }
            }
        }
        (None, None) => json!({}),
    };
    let mut headers = Vec::new();
    if let Some(key) = &args.idempotency_key {
        headers.push(("Idempotency-Key", key.as_str()));
    }
    let started = client
        .send(
            Method::POST,
            &format!("{}/runs", workflow_path(&args.workflow)),
            Some(&json!({"inputs": inputs})),
            &headers,
        )
        .await?
        .json()?;
    let run_id = started["run_id"]
        .as_str()
        .ok_or_else(|| Failure::new(exit::PROTOCOL, "the server's answer has no `run_id`"))?
        .to_string();
    if !args.watch {
        if format == Output::Json {
            output::json(&started)?;
        } else {
            let how = if started["created"] == json!(false) {
                "existing run (same idempotency key)"
            } else {
                "started run"
            };
            output::line(&format!(
                "{how} {run_id} of {} version {} · {}",
                text(&started["workflow_id"]),
                text(&started["version"]),
                text(&started["status"])
            ))?;
        }
        return Ok(exit::SUCCESS);
    }
    if format == Output::Table {
        eprintln!(
            "{}",
            output::clean(&format!(
                "run {run_id} of {} version {}",
                text(&started["workflow_id"]),
                text(&started["version"])
            ))
        );
    }
    watch_run(client, &run_id, format).await
}

/// The definition's node order for a run (its pinned version), when the server still has it.
async fn definition_order(client: &Client, run: &Value) -> Option<Vec<String>> {
    let id = run["workflow_id"].as_str()?;
    let version = run["version"].as_u64().map(|v| v.to_string());
    let path = format!("{}{}", workflow_path(id), query(&[("version", version)]));
    let answer = client.get(&path).await.ok()?;
    Some(
        answer["definition"]["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["id"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Follows a run to its end with the live view, then prints the summary; exit 0 when it
/// completed, 1 otherwise.
///
/// The outcome is the one the followed stream ended with (its terminal event): the run document
/// fetched afterwards is only for the summary table, and may already show a retry.
async fn watch_run(client: &Client, run_id: &str, format: Output) -> Result<u8, Failure> {
    let run = client.get(&run_path(run_id)).await?;
    let order = watch::node_order(&run, definition_order(client, &run).await);
    let mut view = RunWatch::new(&run, order.clone());
    let followed = follow::follow(client, run_id, 0, &mut view).await;
    view.finish();
    let status = followed?.status;
    let run = client.get(&run_path(run_id)).await?;
    let order = watch::node_order(&run, Some(order));
    let table = watch::summary_table(&run, &order).render();
    let now = run["status"].as_str().unwrap_or_default();
    let headline = format!(
        "run {run_id}: {status}{}{}",
        match run["error"].as_str() {
            Some(e) => format!(" ({})", truncate(e, 200)),
            None => String::new(),
        },
        if now.is_empty() || now == status.as_str() {
            String::new()
        } else {
            format!(" · now {now}")
        }
    );
    if format == Output::Json {
        eprint!("{table}");
        eprintln!("{}", output::clean(&headline));
        output::json(&run)?;
    } else {
        output::write_stdout(&table)?;
        output::line(&headline)?;
    }
    Ok(if status == RunStatus::Completed {
        exit::SUCCESS
    } else {
        exit::RUN_FAILED
    })
}

async fn runs(client: &Client, c: RunsCommand, format: Output) -> Result<u8, Failure> {
    let (path, body, label) = match c {
        RunsCommand::List {
            workflow,
            status,
            page,
        } => {
            let answer = client
                .get(&format!(
                    "/api/v1/runs{}",
                    page_query(&page, vec![("workflow_id", workflow), ("status", status)])
                ))
                .await?;
            if format == Output::Json {
                output::json(&answer)?;
                return Ok(exit::SUCCESS);
            }
            let mut table = Table::new(&[
                "RUN", "WORKFLOW", "VERSION", "STATUS", "CREATED", "DURATION", "ERROR",
            ]);
            for r in answer["runs"].as_array().into_iter().flatten() {
                table.row(vec![
                    text(&r["run_id"]),
                    text(&r["workflow_id"]),
                    text(&r["version"]),
                    text(&r["status"]),
                    short_time(&r["created_at"]),
                    if r["started_at"].is_null() {
                        "-".into()
                    } else {
                        output::duration_between(&r["started_at"], &r["finished_at"])
                    },
                    r["error"]
                        .as_str()
                        .map_or_else(|| "-".into(), |e| truncate(e, 60)),
                ]);
            }
            table.print()?;
            more_pages(&answer);
            return Ok(exit::SUCCESS);
        }
        RunsCommand::Get { run } => {
            let answer = client.get(&run_path(&run)).await?;
            if format == Output::Json {
                output::json(&answer)?;
                return Ok(exit::SUCCESS);
            }
            let progress = &answer["progress"];
            output::line(&format!(
                "run {} of {} version {}: {}",
                text(&answer["run_id"]),
                text(&answer["workflow_id"]),
                text(&answer["version"]),
                text(&answer["status"])
            ))?;
            output::line(&format!(
                "progress: {}/{} nodes finished ({}%), {} completed · created {} · duration {}",
                text(&progress["finished"]),
                text(&progress["total"]),
                progress["percent"]
                    .as_f64()
                    .map_or_else(|| "-".into(), |p| format!("{p:.0}")),
                text(&progress["completed"]),
                short_time(&answer["created_at"]),
                if answer["started_at"].is_null() {
                    "-".into()
                } else {
                    output::duration_between(&answer["started_at"], &answer["finished_at"])
                }
            ))?;
            if let Some(e) = answer["error"].as_str() {
                output::line(&format!("error: {e}"))?;
            }
            output::line("")?;
            let order = watch::node_order(&answer, definition_order(client, &answer).await);
            watch::summary_table(&answer, &order).print()?;
            return Ok(exit::SUCCESS);
        }
        RunsCommand::Cancel { run } => (format!("{}/cancel", run_path(&run)), None, "cancelled"),
        RunsCommand::Pause { run } => (format!("{}/pause", run_path(&run)), None, "paused"),
        RunsCommand::Resume { run } => (format!("{}/resume", run_path(&run)), None, "resumed"),
        RunsCommand::Retry { run } => (format!("{}/retry", run_path(&run)), None, "retried"),
        RunsCommand::Approve {
            run,
            node,
            node_output,
        } => (
            format!("{}/nodes/{}/approve", run_path(&run), segment(&node)),
            Some(match node_output {
                Some(o) => json!({"output": o}),
                None => json!({}),
            }),
            "approved",
        ),
        RunsCommand::Reject { run, node, reason } => (
            format!("{}/nodes/{}/reject", run_path(&run), segment(&node)),
            Some(match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            }),
            "rejected",
        ),
    };
    let answer = client.post(&path, body.as_ref()).await?;
    if format == Output::Json {
        output::json(&answer)?;
    } else if let Some(node) = answer["node_id"].as_str() {
        output::line(&format!(
            "run {}: node {node} {label}: {} · run {}",
            text(&answer["run_id"]),
            text(&answer["node_status"]),
            text(&answer["status"])
        ))?;
    } else {
        output::line(&format!(
            "run {}: {}",
            text(&answer["run_id"]),
            text(&answer["status"])
        ))?;
    }
    Ok(exit::SUCCESS)
}

/// Prints events as they come: one JSON document per line, or a readable line.
struct EventPrinter {
    format: Output,
}

impl EventPrinter {
    fn print(&self, e: &Value) -> Result<(), Failure> {
        if self.format == Output::Json {
            return output::json_line(e);
        }
        let data = &e["data"];
        let mut details = Vec::new();
        if let Some(a) = data["attempt"].as_u64() {
            match data["max_attempts"].as_u64() {
                Some(m) if m > 1 => details.push(format!("attempt {a}/{m}")),
                _ => details.push(format!("attempt {a}")),
            }
        }
        if let Some(d) = data["delay_ms"].as_u64() {
            details.push(format!("next in {d}ms"));
        }
        for key in ["error", "reason"] {
            if let Some(s) = data[key].as_str() {
                details.push(format!("{key}: {}", truncate(s, 200)));
            }
        }
        if e["type"] == "node_completed"
            && let Some(o) = data.get("output").filter(|o| !o.is_null())
        {
            details.push(format!("output: {}", truncate(&o.to_string(), 200)));
        }
        let time = output::timestamp(&e["timestamp"])
            .map_or_else(|| "-".into(), |t| t.format("%H:%M:%S%.3f").to_string());
        output::line(&format!(
            "{:>4}  {time}  {:<22} {}{}",
            text(&e["seq"]),
            text(&e["type"]),
            e["node_id"].as_str().unwrap_or("-"),
            if details.is_empty() {
                String::new()
            } else {
                format!("  {}", details.join(" · "))
            }
        ))
    }
}

impl Sink for EventPrinter {
    fn event(&mut self, event: &Value) -> Result<(), Failure> {
        self.print(event)
    }

    fn reconnecting(&mut self, why: &str) {
        eprintln!("connection lost ({}); resuming", output::clean(why));
    }
}

async fn events(client: &Client, args: EventsArgs, format: Output) -> Result<u8, Failure> {
    let mut printer = EventPrinter { format };
    if args.follow {
        let followed = follow::follow(client, &args.run, args.after, &mut printer).await?;
        return Ok(if followed.status == RunStatus::Completed {
            exit::SUCCESS
        } else {
            exit::RUN_FAILED
        });
    }
    let mut after = args.after;
    loop {
        let page = client
            .get(&format!(
                "{}/events{}",
                run_path(&args.run),
                query(&[
                    ("after", Some(after.to_string())),
                    ("limit", Some("1000".into()))
                ])
            ))
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            printer.print(e)?;
        }
        let next = page["next_after"].as_u64().unwrap_or(after);
        if events.is_empty() || next <= after {
            break;
        }
        after = next;
    }
    Ok(exit::SUCCESS)
}

async fn graph(client: &Client, args: GraphArgs) -> Result<u8, Failure> {
    let path = format!(
        "{}/graph{}",
        workflow_path(&args.workflow),
        query(&[
            ("format", Some(args.format.as_str().to_string())),
            ("version", args.version.map(|v| v.to_string())),
        ])
    );
    let reply = client.send(Method::GET, &path, None, &[]).await?;
    let mut body = String::from_utf8_lossy(&reply.body).into_owned();
    if reply.status == 204 || body.is_empty() {
        return Err(Failure::new(
            exit::PROTOCOL,
            "the server sent an empty graph",
        ));
    }
    if !body.ends_with('\n') {
        body.push('\n');
    }
    // Exactly as sent into a file or a pipe; on a terminal, no control character gets through.
    if std::io::stdout().is_terminal() {
        body = output::clean_block(&body).into_owned();
    }
    output::write_stdout(&body)?;
    Ok(exit::SUCCESS)
}
