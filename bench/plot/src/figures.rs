//! The raw figures bench/all.sh writes, parsed: latency distributions (`latency_us,count`, as
//! bench/lib/wrk-requests.lua and bench/lib/pgbench_log.py write them) and the small CSV tables of
//! the sessions curve and the connections sweep. Columns are found by their header name, so a
//! script may add columns without breaking the plots.

use std::collections::BTreeMap;

/// A figure file that cannot be read as what it claims to be.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("the file is empty: no header line")]
    Empty,
    #[error("no column `{0}` in the header")]
    MissingColumn(&'static str),
    #[error("line {line}: expected {expected} fields, found {found}")]
    FieldCount {
        line: usize,
        expected: usize,
        found: usize,
    },
    #[error("not a CSV table: {0}")]
    Csv(#[from] csv::Error),
    #[error("line {line}: `{value}` in column `{column}` is not a number")]
    NotANumber {
        line: usize,
        column: String,
        value: String,
    },
}

/// A CSV table with a header line, read by the `csv` crate: Python's csv module, which writes
/// the curve's and the sweep's tables, quotes a field that holds a comma.
struct Table {
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    fn parse(text: &str) -> Result<Self, FigureError> {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            // A row of the wrong length is reported with its line, below.
            .flexible(true)
            .from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
        if header.iter().all(String::is_empty) {
            return Err(FigureError::Empty);
        }
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record?;
            let line = record.position().map_or(0, |p| p.line() as usize);
            if record.iter().all(str::is_empty) {
                continue;
            }
            if record.len() != header.len() {
                return Err(FigureError::FieldCount {
                    line,
                    expected: header.len(),
                    found: record.len(),
                });
            }
            rows.push((line, record.iter().map(str::to_owned).collect()));
        }
        Ok(Self { header, rows })
    }

    fn column(&self, name: &'static str) -> Result<usize, FigureError> {
        self.header
            .iter()
            .position(|h| *h == name)
            .ok_or(FigureError::MissingColumn(name))
    }
}

fn number<T: std::str::FromStr>(line: usize, column: &str, value: &str) -> Result<T, FigureError> {
    value.parse().map_err(|_| FigureError::NotANumber {
        line,
        column: column.to_owned(),
        value: value.to_owned(),
    })
}

/// One logarithmic bin of a latency distribution: `(lower µs, upper µs, share of requests 0–1)`.
pub type LogBin = (f64, f64, f64);

/// How many requests took each latency: ascending `(latency in µs, count)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyDistribution {
    pub buckets: Vec<(u64, u64)>,
}

impl LatencyDistribution {
    pub fn parse(text: &str) -> Result<Self, FigureError> {
        let table = Table::parse(text)?;
        let (lat, count) = (table.column("latency_us")?, table.column("count")?);
        let mut merged = BTreeMap::new();
        for (line, row) in &table.rows {
            let l: u64 = number(*line, "latency_us", &row[lat])?;
            let c: u64 = number(*line, "count", &row[count])?;
            *merged.entry(l).or_insert(0) += c;
        }
        Ok(Self {
            buckets: merged.into_iter().collect(),
        })
    }

    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|(_, c)| c).sum()
    }

    /// The nearest-rank percentile `p` (0–100) in µs, as wrk and pgbench_log.py report it.
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        self.buckets.iter().find_map(|&(latency, count)| {
            seen += count;
            (seen >= rank).then_some(latency)
        })
    }

    /// The share of requests (0–1) in each of `per_decade` logarithmic bins per decade of
    /// latency: `(lower µs, upper µs, share)`, from the first non-empty bin to the last. Equal
    /// widths on a log axis, so distributions of very different latencies compare on one chart.
    pub fn log_bins(&self, per_decade: u32) -> Vec<LogBin> {
        let total = self.total();
        if total == 0 || per_decade == 0 {
            return Vec::new();
        }
        let step = f64::from(per_decade);
        let bin_of = |latency: u64| ((latency.max(1) as f64).log10() * step).floor() as i64;
        let mut counts: BTreeMap<i64, u64> = BTreeMap::new();
        for &(latency, count) in &self.buckets {
            *counts.entry(bin_of(latency)).or_insert(0) += count;
        }
        let (Some(&first), Some(&last)) = (counts.keys().next(), counts.keys().next_back()) else {
            return Vec::new();
        };
        (first..=last)
            .map(|bin| {
                let lower = 10f64.powf(bin as f64 / step);
                let upper = 10f64.powf((bin + 1) as f64 / step);
                let share = counts.get(&bin).copied().unwrap_or(0) as f64 / total as f64;
                (lower, upper, share)
            })
            .collect()
    }
}

/// One point of the sessions curve: a workload's latency with `sessions` sessions seeded.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    pub sessions: u64,
    pub series: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `sessions,series,p50_ms,p99_ms[,…]`, one line per (size, workload).
pub fn parse_curve(text: &str) -> Result<Vec<CurvePoint>, FigureError> {
    let table = Table::parse(text)?;
    let (s, series, p50, p99) = (
        table.column("sessions")?,
        table.column("series")?,
        table.column("p50_ms")?,
        table.column("p99_ms")?,
    );
    table
        .rows
        .iter()
        .map(|(line, row)| {
            Ok(CurvePoint {
                sessions: number(*line, "sessions", &row[s])?,
                series: row[series].clone(),
                p50_ms: number(*line, "p50_ms", &row[p50])?,
                p99_ms: number(*line, "p99_ms", &row[p99])?,
            })
        })
        .collect()
}

/// One point of the connections sweep: a workload's throughput at `connections`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub connections: u32,
    pub series: String,
    pub rps: f64,
}

/// `connections,series,rps[,…]`, one line per (connections, workload).
pub fn parse_sweep(text: &str) -> Result<Vec<SweepPoint>, FigureError> {
    let table = Table::parse(text)?;
    let (c, series, rps) = (
        table.column("connections")?,
        table.column("series")?,
        table.column("rps")?,
    );
    table
        .rows
        .iter()
        .map(|(line, row)| {
            Ok(SweepPoint {
                connections: number(*line, "connections", &row[c])?,
                series: row[series].clone(),
                rps: number(*line, "rps", &row[rps])?,
            })
        })
        .collect()
}

/// Points grouped by series name, in the order the series first appear, each sorted by x.
pub fn by_series<T, F>(points: &[T], name: F, x: impl Fn(&T) -> f64) -> Vec<(String, Vec<&T>)>
where
    F: Fn(&T) -> &str,
{
    let mut out: Vec<(String, Vec<&T>)> = Vec::new();
    for p in points {
        match out.iter_mut().find(|(n, _)| n == name(p)) {
            Some((_, v)) => v.push(p),
            None => out.push((name(p).to_owned(), vec![p])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by(|a, b| x(a).total_cmp(&x(b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_merges_repeated_latencies_and_reports_nearest_rank_percentiles() {
        // 100 requests: 90 at 200 µs, 9 at 1 ms, 1 at 20 ms (listed out of order, one repeated).
        let d = LatencyDistribution::parse("latency_us,count\n1000,9\n200,40\n20000,1\n200,50\n")
            .unwrap();
        assert_eq!(d.buckets, vec![(200, 90), (1000, 9), (20000, 1)]);
        assert_eq!(d.total(), 100);
        assert_eq!(d.percentile_us(50.0), Some(200));
        assert_eq!(d.percentile_us(90.0), Some(200));
        assert_eq!(d.percentile_us(91.0), Some(1000));
        assert_eq!(d.percentile_us(99.0), Some(1000));
        assert_eq!(d.percentile_us(100.0), Some(20000));
    }

    #[test]
    fn log_bins_cover_the_range_without_gaps_and_their_shares_add_up_to_one() {
        let d = LatencyDistribution::parse("latency_us,count\n150,3\n900,1\n12000,4\n").unwrap();
        let bins = d.log_bins(10);
        // 150 µs is in the bin starting at 10^(21/10) ≈ 125.9; 12 ms in the one at 10^(40/10).
        assert!((bins[0].0 - 125.89).abs() < 0.01, "{:?}", bins[0]);
        assert!((bins.last().unwrap().0 - 10_000.0).abs() < 1e-6);
        for pair in bins.windows(2) {
            assert!((pair[0].1 - pair[1].0).abs() < 1e-9, "gap between {pair:?}");
        }
        let shares: f64 = bins.iter().map(|b| b.2).sum();
        assert!((shares - 1.0).abs() < 1e-12);
        assert!((bins[0].2 - 3.0 / 8.0).abs() < 1e-12);
        assert_eq!(bins.len(), 20);
    }

    #[test]
    fn the_curve_is_read_by_header_name_whatever_the_column_order() {
        let text = "series,sessions,rps,p99_ms,p50_ms\n\
                    token,10000,20000,1.5,0.4\n\
                    token,10000000,18000,1.7,0.5\n";
        let points = parse_curve(text).unwrap();
        assert_eq!(
            points[1],
            CurvePoint {
                sessions: 10_000_000,
                series: "token".into(),
                p50_ms: 0.5,
                p99_ms: 1.7
            }
        );
    }

    #[test]
    fn a_bad_figure_names_its_line_and_column() {
        let err = parse_sweep("connections,series,rps\n1,token,900\n4,token,n/a\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: `n/a` in column `rps` is not a number"
        );
        let err = parse_curve("sessions,series,p50_ms\n").unwrap_err();
        assert!(matches!(err, FigureError::MissingColumn("p99_ms")));
        let err = LatencyDistribution::parse("latency_us,count\n100\n").unwrap_err();
        assert!(matches!(
            err,
            FigureError::FieldCount {
                line: 2,
                expected: 2,
                found: 1
            }
        ));
    }

    #[test]
    fn a_quoted_field_with_a_comma_is_one_field() {
        // bench/lib/all_figures.py writes with Python's csv module, which quotes such a field.
        let text = "sessions,series,p50_ms,p99_ms\n\
                    10000,\"authenticate by token, fixed rate\",0.2,0.44\n";
        let points = parse_curve(text).unwrap();
        assert_eq!(points[0].series, "authenticate by token, fixed rate");
        assert_eq!(points[0].p99_ms, 0.44);
    }

    #[test]
    fn series_keep_their_first_appearance_order_and_sort_by_x() {
        let points =
            parse_sweep("connections,series,rps\n16,token,3\n1,pgbench -S,1\n1,token,2\n").unwrap();
        let groups = by_series(&points, |p| &p.series, |p| f64::from(p.connections));
        let names: Vec<&str> = groups.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["token", "pgbench -S"]);
        let token: Vec<u32> = groups[0].1.iter().map(|p| p.connections).collect();
        assert_eq!(token, [1, 16]);
    }
}
