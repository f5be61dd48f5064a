//! The SVG chart, drawn with plotters: text as SVG `<text>`, so no font files are needed.

use std::path::Path;

use plotters::prelude::*;

use crate::PEERS;
use crate::conditions::CONDITIONS;

/// One bar: a side's median as a fraction of the bare twin's, and the lowest and highest of
/// the rounds' own fractions, drawn as a line through the bar.
pub struct Bar {
    pub ratio: f64,
    pub range: Option<(f64, f64)>,
}

/// For each workload (`names`), its bars (`bars[i]`): Python on idle cores, then Rust in
/// each condition, then (where the build measures peers) the workload's peer crate in each
/// condition, each as a fraction of the bare twin's speed in the same condition, on a log
/// scale, with the twin as the line at 1.0. A missing figure leaves its bar out.
pub fn draw(
    path: &Path,
    names: &[&str],
    bars: &[Vec<Option<Bar>>],
) -> Result<(), Box<dyn std::error::Error>> {
    let values = bars.iter().flatten().flatten().flat_map(|bar| {
        let (low, high) = bar.range.unwrap_or((bar.ratio, bar.ratio));
        [bar.ratio, low, high]
    });
    let bottom = values.clone().fold(0.5, f64::min);
    let top = values.fold(1.0, f64::max);
    // The legend, in the top left corner, takes about a decade of the scale's height, and
    // the peers' three entries a decade more: that much room above the highest bar or range
    // keeps it clear of them (with less, it hid a bar that reached 2.3).
    let headroom = if PEERS.is_empty() { 15.0 } else { 150.0 };
    let (low, high) = (
        10f64.powf((bottom / 2.0).log10().floor()),
        10f64.powf((top * headroom).log10().ceil()),
    );
    let root = SVGBackend::new(path, (1100, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Speed as a fraction of the bare twin (the same work in bare libc calls = 1.0), log scale",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..names.len() as f64, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            let centred = (x - x.floor() - 0.5).abs() < 1e-6;
            if centred {
                names.get(i).map_or(String::new(), |n| n.to_string())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .y_desc("ops/s ÷ the bare twin's")
        .draw()?;
    let labels: Vec<String> = std::iter::once("Python multiprocessing, two idle cores".to_owned())
        .chain(
            CONDITIONS
                .iter()
                .map(|c| format!("Rust, this workspace, {}", c.name())),
        )
        .chain(CONDITIONS.iter().filter(|_| !PEERS.is_empty()).map(|c| {
            format!(
                "peer crate (procspawn, ipc-channel, raw_sync), {}",
                c.name()
            )
        }))
        .collect();
    let colours = [
        RGBColor(55, 118, 171),
        RGBColor(222, 115, 40),
        RGBColor(240, 170, 110),
        RGBColor(160, 80, 20),
        RGBColor(60, 150, 80),
        RGBColor(140, 200, 140),
        RGBColor(30, 90, 45),
    ];
    let width = 0.8 / labels.len() as f64;
    for (k, (label, &colour)) in labels.iter().zip(&colours).enumerate() {
        let left = |i: usize| i as f64 + 0.1 + k as f64 * width;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, bar)| {
                let value = bar.get(k)?.as_ref()?.ratio;
                Some(Rectangle::new(
                    [(left(i), low), (left(i) + width * 0.9, value)],
                    colour.filled(),
                ))
            }))?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    // The rounds' range: a thin line through the middle of each bar.
    let ranges = bars.iter().enumerate().flat_map(|(i, bar)| {
        bar.iter().enumerate().filter_map(move |(k, b)| {
            let (from, to) = b.as_ref()?.range?;
            let x = i as f64 + 0.1 + (k as f64 + 0.45) * width;
            Some(PathElement::new(
                vec![(x, from), (x, to)],
                BLACK.stroke_width(1),
            ))
        })
    });
    let ranges = chart.draw_series(ranges)?;
    // In the legend only where there are ranges (not with one round).
    if bars
        .iter()
        .flatten()
        .flatten()
        .any(|bar| bar.range.is_some())
    {
        ranges
            .label("line through a bar: the lowest to the highest of the rounds")
            .legend(|(x, y)| {
                PathElement::new([(x + 6, y - 6), (x + 6, y + 6)], BLACK.stroke_width(1))
            });
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 1.0), (names.len() as f64, 1.0)],
            BLACK.stroke_width(2),
        )))?
        .label("bare twin: the same work in bare libc calls (1.0)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
