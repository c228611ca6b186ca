//! Draws the SVG plots of docs/benchmarks.md from the raw figures bench/all.sh collects under
//! bench/results/<run>/: latency histograms, throughput against connections, and authenticate
//! latency against the number of sessions stored. SVG only, with plotters' built-in text
//! metrics, so it builds without any system font library.
#![forbid(unsafe_code)]

pub mod charts;
pub mod figures;
