//! The three charts of docs/benchmarks.md, drawn as SVG with plotters: latency distributions,
//! throughput against connections, and authenticate latency against the sessions stored.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::figures::{by_series, CurvePoint, LatencyDistribution, LogBin, SweepPoint};

/// A chart that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("nothing to draw in {0}: no data points")]
    NoData(&'static str),
    #[error("drawing {chart}")]
    Draw {
        chart: &'static str,
        #[source]
        source: DrawingAreaErrorKind<std::io::Error>,
    },
}

const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(90, 90, 90),
];

fn colour(i: usize) -> RGBColor {
    COLOURS[i % COLOURS.len()]
}

fn drawing(chart: &'static str) -> impl Fn(DrawingAreaErrorKind<std::io::Error>) -> ChartError {
    move |source| ChartError::Draw { chart, source }
}

fn area(path: &Path) -> DrawingArea<SVGBackend<'_>, Shift> {
    SVGBackend::new(path, SIZE).into_drawing_area()
}

/// Latency distributions of several workloads on one chart: share of requests per log bin
/// (10 per decade), drawn as steps, with each series' p50 and p99 in its legend.
pub fn latency_histogram(
    path: &Path,
    title: &str,
    series: &[(String, LatencyDistribution)],
) -> Result<(), ChartError> {
    const CHART: &str = "the latency histogram";
    let binned: Vec<(&String, &LatencyDistribution, Vec<LogBin>)> = series
        .iter()
        .map(|(name, d)| (name, d, d.log_bins(10)))
        .filter(|(_, _, bins)| !bins.is_empty())
        .collect();
    if binned.is_empty() {
        return Err(ChartError::NoData(CHART));
    }
    let lo = binned
        .iter()
        .map(|(_, _, b)| b[0].0)
        .fold(f64::INFINITY, f64::min);
    let hi = binned
        .iter()
        .filter_map(|(_, _, b)| b.last().map(|l| l.1))
        .fold(0.0, f64::max);
    let top = binned
        .iter()
        .flat_map(|(_, _, b)| b.iter().map(|x| x.2))
        .fold(0.0, f64::max);
    let root = area(path);
    let err = drawing(CHART);
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        // Head room above the highest bin for the legend (a line per series).
        .build_cartesian_2d(
            (lo / 1000.0..hi / 1000.0).log_scale(),
            0.0..top * 100.0 * (1.15 + 0.1 * binned.len() as f64),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale; 10 bins per decade)")
        .y_desc("% of requests in the bin")
        .x_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(&err)?;
    for (i, (name, d, bins)) in binned.iter().enumerate() {
        let c = colour(i);
        let steps = bins
            .iter()
            .flat_map(|&(l, u, share)| [(l / 1000.0, share * 100.0), (u / 1000.0, share * 100.0)]);
        let p = |q| d.percentile_us(q).map_or(0.0, |v| v as f64 / 1000.0);
        let label = format!(
            "{name}: p50 {} ms, p99 {} ms ({} samples)",
            format_ms(p(50.0)),
            format_ms(p(99.0)),
            d.total()
        );
        chart
            .draw_series(LineSeries::new(steps, c.stroke_width(2)))
            .map_err(&err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    legend(&mut chart).map_err(&err)?;
    root.present().map_err(&err)
}

/// Requests per second against connections (log 2 axis), one line per workload.
pub fn throughput(path: &Path, title: &str, points: &[SweepPoint]) -> Result<(), ChartError> {
    const CHART: &str = "the throughput chart";
    if points.is_empty() {
        return Err(ChartError::NoData(CHART));
    }
    let xs = points.iter().map(|p| f64::from(p.connections));
    let (lo, hi) = xs.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let top = points.iter().map(|p| p.rps).fold(0.0, f64::max);
    let root = area(path);
    let err = drawing(CHART);
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (lo / 1.25..hi * 1.25).log_scale().base(2.0),
            0.0..top * 1.15,
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("connections (log scale)")
        .y_desc("requests (transactions) per second")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(&err)?;
    for (i, (name, pts)) in by_series(points, |p| &p.series, |p| f64::from(p.connections))
        .into_iter()
        .enumerate()
    {
        let c = colour(i);
        let xy: Vec<(f64, f64)> = pts
            .iter()
            .map(|p| (f64::from(p.connections), p.rps))
            .collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))
            .map_err(&err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(xy.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(&err)?;
    }
    legend(&mut chart).map_err(&err)?;
    root.present().map_err(&err)
}

/// p50 (thin, hollow points) and p99 (thick, filled points) latency against the sessions stored,
/// both axes log, one colour per workload; with `target_series`, a dashed line at 1.2 × that
/// series' p99 at the smallest size: the "within 20 %" bound its p99 at the largest must stay
/// under.
pub fn sessions_curve(
    path: &Path,
    title: &str,
    points: &[CurvePoint],
    target_series: Option<&str>,
) -> Result<(), ChartError> {
    const CHART: &str = "the sessions curve";
    if points.is_empty() {
        return Err(ChartError::NoData(CHART));
    }
    let sizes = points.iter().map(|p| p.sessions as f64);
    let (lo, hi) = sizes.fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    let lats = points
        .iter()
        .flat_map(|p| [p.p50_ms, p.p99_ms])
        .filter(|v| *v > 0.0);
    let (ymin, ymax) = lats.fold((f64::INFINITY, 0.0f64), |(a, b), y| (a.min(y), b.max(y)));
    if !ymin.is_finite() {
        return Err(ChartError::NoData(CHART));
    }
    let groups = by_series(points, |p| &p.series, |p| p.sessions as f64);
    let root = area(path);
    let err = drawing(CHART);
    root.fill(&WHITE).map_err(&err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(
            (lo / 1.6..hi * 1.6).log_scale(),
            (ymin / 1.5..headroom(ymin / 1.5, ymax * 1.5, 2 * groups.len() + 1)).log_scale(),
        )
        .map_err(&err)?;
    chart
        .configure_mesh()
        .x_desc("sessions stored (log scale)")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|v| format_count(*v))
        .y_label_formatter(&|v| format_ms(*v))
        .draw()
        .map_err(&err)?;
    for (i, (name, pts)) in groups.iter().enumerate() {
        let c = colour(i);
        for (q, width, filled) in [("p99", 3, true), ("p50", 1, false)] {
            let xy: Vec<(f64, f64)> = pts
                .iter()
                .map(|p| {
                    (
                        p.sessions as f64,
                        if q == "p99" { p.p99_ms } else { p.p50_ms },
                    )
                })
                .filter(|(_, y)| *y > 0.0)
                .collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), c.stroke_width(width)))
                .map_err(&err)?
                .label(format!("{name} {q}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(width))
                });
            let style = if filled {
                c.filled()
            } else {
                c.stroke_width(1)
            };
            chart
                .draw_series(xy.into_iter().map(|p| Circle::new(p, 4, style)))
                .map_err(&err)?;
        }
    }
    if let Some((name, pts)) = target_series.and_then(|t| groups.iter().find(|(n, _)| n == t)) {
        if let Some(first) = pts.first() {
            let bound = first.p99_ms * 1.2;
            let dashes = dashed((lo, hi), bound, 24);
            chart
                .draw_series(
                    dashes
                        .into_iter()
                        .map(|seg| PathElement::new(seg, BLACK.mix(0.6).stroke_width(1))),
                )
                .map_err(&err)?
                .label(format!(
                    "target: {name} p99 within 20 % of its {} value ({} ms)",
                    format_count(first.sessions as f64),
                    format_ms(bound)
                ))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.6)));
        }
    }
    legend(&mut chart).map_err(&err)?;
    root.present().map_err(&err)
}

/// The top of a log y axis from `bottom` that leaves the data (up to `top`) below a legend of
/// `entries` lines in the upper part of the plot: about 19 px a line plus the box's padding.
fn headroom(bottom: f64, top: f64, entries: usize) -> f64 {
    let plot_height = f64::from(SIZE.1) - 48.0 - 60.0;
    let legend = (entries as f64 * 19.0 + 28.0).min(plot_height * 0.6);
    let span = (top / bottom).ln();
    bottom * (span / (1.0 - legend / plot_height)).exp()
}

/// A horizontal dashed line at `y` from `x.0` to `x.1` on a log x axis: `n` dashes, evenly
/// spaced in log space.
fn dashed(x: (f64, f64), y: f64, n: u32) -> Vec<Vec<(f64, f64)>> {
    let (a, b) = (x.0.ln(), x.1.ln());
    let step = (b - a) / f64::from(2 * n - 1);
    (0..n)
        .map(|i| {
            let s = a + step * f64::from(2 * i);
            vec![(s.exp(), y), ((s + step).exp(), y)]
        })
        .collect()
}

fn legend<'a, DB: DrawingBackend + 'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
}

/// 0.25 → "0.25", 3 → "3", 12.5 → "12.5": as few digits as the value needs.
pub fn format_ms(v: f64) -> String {
    let s = if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// 10000 → "10k", 1e7 → "10M".
pub fn format_count(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", format_ms(v / 1e6))
    } else if v >= 1e3 {
        format!("{}k", format_ms(v / 1e3))
    } else {
        format_ms(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_read_as_people_write_numbers() {
        assert_eq!(format_ms(0.25), "0.25");
        assert_eq!(format_ms(3.0), "3");
        assert_eq!(format_ms(12.5), "12.5");
        assert_eq!(format_ms(250.4), "250");
        assert_eq!(format_count(10_000.0), "10k");
        assert_eq!(format_count(10_000_000.0), "10M");
        assert_eq!(format_count(1_500_000.0), "1.5M");
    }

    #[test]
    fn the_legend_headroom_keeps_the_data_in_the_lower_part_of_a_log_axis() {
        let (bottom, top) = (0.1, 10.0);
        let axis_top = headroom(bottom, top, 9);
        assert!(axis_top > top);
        // The data's share of the axis (log space) is what the legend leaves free.
        let share = (top / bottom).ln() / (axis_top / bottom).ln();
        let plot_height = f64::from(SIZE.1) - 48.0 - 60.0;
        assert!((share - (1.0 - (9.0 * 19.0 + 28.0) / plot_height)).abs() < 1e-9);
    }

    #[test]
    fn a_dashed_line_spans_the_axis_in_separate_dashes() {
        let d = dashed((10.0, 1000.0), 2.0, 3);
        assert_eq!(d.len(), 3);
        assert!((d[0][0].0 - 10.0).abs() < 1e-9);
        assert!((d[2][1].0 - 1000.0).abs() < 1e-6);
        assert!(d[0][1].0 < d[1][0].0, "dashes must leave gaps");
    }
}
