//! `lanyard-bench-plot`: the charts of docs/benchmarks.md (see bench/all.sh).
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use lanyard_bench_plot::{charts, figures};

/// Draws docs/benchmarks.md's SVG charts from bench/all.sh's raw figures; each chart is drawn only
/// if its inputs are given.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Folder the SVGs are written to.
    #[arg(long, default_value = "docs/plots")]
    out: PathBuf,
    /// A latency distribution (`latency_us,count` CSV) as LABEL=PATH; repeat for several series
    /// on one chart (latency-histogram.svg).
    #[arg(long = "histogram", value_name = "LABEL=PATH")]
    histograms: Vec<String>,
    /// The histogram chart's title.
    #[arg(long, default_value = "Latency distribution")]
    histogram_title: String,
    /// The connections sweep (`connections,series,rps` CSV): throughput-connections.svg.
    #[arg(long)]
    sweep: Option<PathBuf>,
    /// The sweep chart's title.
    #[arg(long, default_value = "Throughput against connections")]
    sweep_title: String,
    /// The sessions curve (`sessions,series,p50_ms,p99_ms` CSV): sessions-curve.svg.
    #[arg(long)]
    curve: Option<PathBuf>,
    /// The curve chart's title.
    #[arg(long, default_value = "Authenticate latency against sessions stored")]
    curve_title: String,
    /// The curve series the "within 20 %" target applies to (drawn as a dashed bound).
    #[arg(long)]
    curve_target: Option<String>,
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if !args.histograms.is_empty() {
        let mut series = Vec::new();
        for h in &args.histograms {
            let (label, path) = h
                .split_once('=')
                .with_context(|| format!("--histogram {h}: expected LABEL=PATH"))?;
            let d = figures::LatencyDistribution::parse(&read(Path::new(path))?)
                .with_context(|| format!("parsing {path}"))?;
            series.push((label.to_owned(), d));
        }
        let out = args.out.join("latency-histogram.svg");
        charts::latency_histogram(&out, &args.histogram_title, &series)?;
        println!("{}", out.display());
    }
    if let Some(path) = &args.sweep {
        let points = figures::parse_sweep(&read(path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let out = args.out.join("throughput-connections.svg");
        charts::throughput(&out, &args.sweep_title, &points)?;
        println!("{}", out.display());
    }
    if let Some(path) = &args.curve {
        let points = figures::parse_curve(&read(path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let out = args.out.join("sessions-curve.svg");
        charts::sessions_curve(
            &out,
            &args.curve_title,
            &points,
            args.curve_target.as_deref(),
        )?;
        println!("{}", out.display());
    }
    Ok(())
}
