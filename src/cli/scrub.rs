//! `kyso scrub`: drives AdminService.Scrub on a running node (which alone may open its
//! state store), shows a progress bar by bytes checked, prints every bad blob, and exits
//! non-zero while any bad copy remains unrepaired.

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kyso_proto::v1 as pb;
use serde_json::json;

use super::client::{channel, print_json, status_error, Connection};

#[derive(Debug, Args)]
pub struct ScrubArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// gRPC URL of a node holding good copies (nodes with their own local storage): a
    /// missing or corrupt blob is fetched from it, hash-checked, and written in place of
    /// the bad copy only.
    #[arg(long)]
    pub repair_from: Option<String>,
}

pub async fn scrub(args: ScrubArgs) -> anyhow::Result<()> {
    let mut client = pb::admin_service_client::AdminServiceClient::new(channel(&args.connection).await?);
    let request = pb::ScrubRequest { repair_from: args.repair_from.clone().unwrap_or_default() };
    let mut stream = client.scrub(request).await.map_err(status_error)?.into_inner();
    let progress = if args.connection.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    progress.set_style(
        ProgressStyle::with_template("{spinner} scrub [{bar:30}] {bytes}/{total_bytes} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut problems: Vec<pb::ScrubProblem> = Vec::new();
    let mut last = pb::ScrubProgress::default();
    // The server sends a bounded number of reports (one per bad blob plus throttled
    // progress); the stream ends after `done` or with an error.
    while let Some(report) = stream.message().await.map_err(|status| {
        progress.abandon();
        status_error(status)
    })? {
        progress.set_length(report.bytes_total);
        progress.set_position(report.bytes_checked);
        progress.set_message(format!("{}/{} blobs, {} bad", report.blobs_checked, report.blobs_total, report.problems_found));
        if let Some(problem) = &report.problem {
            if !args.connection.json {
                progress.suspend(|| out!("{}", describe(problem)));
            }
            problems.push(problem.clone());
        }
        last = report;
    }
    progress.finish_and_clear();
    if !last.done {
        bail!("the scrub ended before it finished; run it again");
    }
    let unrepaired = problems.iter().filter(|problem| !problem.repaired).count();
    if args.connection.json {
        print_json(json!({
            "blobs_checked": last.blobs_checked,
            "bytes_checked": last.bytes_checked,
            "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
            "unrepaired": unrepaired,
        }));
    } else {
        out!(
            "scrub checked {} blobs ({} bytes): {} bad, {} repaired",
            last.blobs_checked, last.bytes_checked, last.problems_found, last.problems_repaired
        );
    }
    if unrepaired > 0 {
        bail!(
            "{unrepaired} blob(s) are missing or corrupt; run `kyso scrub --repair-from URL` with a node that holds good copies, or restore them from backup"
        );
    }
    Ok(())
}

fn finding_name(problem: &pb::ScrubProblem) -> &'static str {
    match pb::ScrubFinding::try_from(problem.finding) {
        Ok(pb::ScrubFinding::Missing) => "missing",
        Ok(pb::ScrubFinding::Corrupt) => "corrupt",
        _ => "unknown",
    }
}

fn describe(problem: &pb::ScrubProblem) -> String {
    let mut line = format!("{} {} ({} bytes)", finding_name(problem), hex::encode(&problem.sha256), problem.expected_size_bytes);
    if problem.finding == pb::ScrubFinding::Corrupt as i32 {
        line.push_str(&format!(": stored {} bytes hash to {}", problem.stored_size_bytes, hex::encode(&problem.stored_sha256)));
    }
    if problem.repaired {
        line.push_str(" — repaired");
    } else if !problem.repair_error.is_empty() {
        line.push_str(&format!(" — not repaired: {}", problem.repair_error));
    }
    line
}

fn problem_json(problem: &pb::ScrubProblem) -> serde_json::Value {
    json!({
        "sha256": hex::encode(&problem.sha256),
        "finding": finding_name(problem),
        "expected_size_bytes": problem.expected_size_bytes,
        "stored_size_bytes": problem.stored_size_bytes,
        "stored_sha256": hex::encode(&problem.stored_sha256),
        "repaired": problem.repaired,
        "repair_error": problem.repair_error,
    })
}
